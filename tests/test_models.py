"""Every registered model: builds offline, gives (B, 1) probabilities, saves and reloads."""

import keras
import numpy as np
import pytest
from conftest import SHARED_WEIGHTS

from gender import UserError
from models import create_model, list_models

# The smallest convenient input per model. cnn7's five valid-conv + pool stages need at least
# 94x94 (at 64x64 the feature map shrinks to nothing); every other model works at 32x32.
SMALL_SIZE = {"cnn7": (96, 96)}


def small_size(name):
    return SMALL_SIZE.get(name, (32, 32))


def uint8_batch(size, n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def test_registry_lists_the_five_models():
    assert list_models() == ["cnn3", "cnn5", "cnn7", "mobilenetv2", "vgg16"]


@pytest.mark.parametrize("name", list_models())
def test_forward_save_and_reload(name, tmp_path):
    size = small_size(name)
    model = create_model(name, image_size=size, backbone_weights=None)
    assert tuple(model.input_shape) == (None, *size, 3)

    x = uint8_batch(size)
    y = np.asarray(model.predict(x, verbose=0))
    assert y.shape == (2, 1)
    assert not np.isnan(y).any()
    assert ((y >= 0) & (y <= 1)).all()

    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert tuple(reloaded.input_shape) == tuple(model.input_shape)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), y, atol=1e-5)
    # Predictions alone could hide lost weights (a random-init MobileNetV2 outputs ~0.5 for
    # everything), so compare every weight too.
    before, after = model.get_weights(), reloaded.get_weights()
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # The trainable/frozen split is part of the saved model.
    assert len(reloaded.trainable_weights) == len(model.trainable_weights)


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(ValueError) as info:
        create_model("resnet999")
    message = str(info.value)
    assert "resnet999" in message
    for name in list_models():
        assert name in message


def test_cnn7_at_150_has_the_seed_parameter_count():
    model = create_model("cnn7", image_size=(150, 150))
    assert model.count_params() == 91_329


def test_cnn7_too_small_input_is_a_user_error():
    # --image-size accepts 32 and up, but cnn7's five conv + pool stages need 94; the problem must
    # be reported as a UserError (one line from the CLI), not a Keras shape traceback.
    with pytest.raises(UserError, match="94"):
        create_model("cnn7", image_size=(64, 64))


def _backbone(model):
    (base,) = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return base


def _trainable_names(base):
    return {layer.name for layer in base.layers if layer.weights and layer.trainable}


@pytest.mark.parametrize("kwargs", [{}, {"trainable_blocks": None}])
def test_vgg16_default_trains_block5_and_head_only(kwargs):
    model = create_model("vgg16", image_size=(32, 32), **kwargs)
    base = _backbone(model)
    conv = {layer.name for layer in base.layers if layer.weights}
    assert _trainable_names(base) == {n for n in conv if n.startswith("block5_")}
    assert _trainable_names(base) == {"block5_conv1", "block5_conv2", "block5_conv3"}
    head = [w for w in model.trainable_weights if not any(w is v for v in base.weights)]
    assert {w.path.split("/")[0] for w in head} == {"head_dense", "p_woman"}


def test_vgg16_zero_trainable_blocks_freezes_every_conv_layer():
    model = create_model("vgg16", image_size=(32, 32), trainable_blocks=0)
    base = _backbone(model)
    assert _trainable_names(base) == set()
    assert not base.trainable_weights
    # Only the head trains: Dense 512 -> 256 and Dense 256 -> 1.
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 512 * 256 + 256 + 256 + 1


@pytest.mark.parametrize("kwargs", [{}, {"trainable_blocks": None}])
def test_mobilenetv2_default_freezes_the_whole_backbone(kwargs):
    model = create_model("mobilenetv2", image_size=(32, 32), **kwargs)
    base = _backbone(model)
    assert _trainable_names(base) == set()
    assert not base.trainable_weights
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 1280 + 1  # the one-unit head


def test_frozen_prefix_and_suffix_compose_to_the_full_model():
    # The trainer trains the suffix on cached prefix outputs; it must be the same function and
    # share the weights of the model that gets saved.
    from models.split import split_frozen_prefix

    model = create_model("vgg16", image_size=(32, 32))  # blocks 1-4 frozen, block 5 trains
    prefix, suffix = split_frozen_prefix(model)
    x = uint8_batch((32, 32), n=3)
    full = np.asarray(model(x.astype("float32"), training=False))
    composed = np.asarray(suffix(prefix(x.astype("float32")), training=False))
    np.testing.assert_allclose(composed, full, atol=1e-5)
    assert not prefix.trainable_weights
    model_ids = {id(w) for w in model.trainable_weights}
    assert {id(w) for w in suffix.trainable_weights} == model_ids
    assert split_frozen_prefix(create_model("cnn3", image_size=(32, 32))) is None


def test_trainable_blocks_out_of_range_is_a_user_error():
    with pytest.raises(UserError, match="--trainable-blocks 6"):
        create_model("vgg16", image_size=(32, 32), trainable_blocks=6)


def test_missing_backbone_weights_file_is_a_user_error(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(UserError, match="nope.weights.h5"):
        create_model("vgg16", image_size=(32, 32), backbone_weights=str(missing))


# --- real ImageNet weights (local files only; never downloaded) -------------------------------

IMAGENET_FILES = {
    "vgg16": SHARED_WEIGHTS / "vgg16_imagenet_notop.weights.h5",
    "mobilenetv2": SHARED_WEIGHTS / "mobilenet_v2_imagenet_notop.weights.h5",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(IMAGENET_FILES))
def test_local_imagenet_weights_load(name):
    path = IMAGENET_FILES[name]
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    size = (64, 64)
    pretrained = create_model(name, image_size=size, backbone_weights=str(path))
    random_init = create_model(name, image_size=size, backbone_weights=None)
    base_p, base_r = _backbone(pretrained), _backbone(random_init)
    # The first conv kernel comes from the file: same on a second load, unlike random init.
    again = _backbone(create_model(name, image_size=size, backbone_weights=str(path)))
    first = next(layer for layer in base_p.layers if layer.weights).name
    kernel = base_p.get_layer(first).get_weights()[0]
    np.testing.assert_array_equal(kernel, again.get_layer(first).get_weights()[0])
    assert not np.allclose(kernel, base_r.get_layer(first).get_weights()[0])
    # Pretrained features respond to the image (a random-init MobileNetV2 gives ~0 everywhere).
    features = keras.Model(pretrained.input, pretrained.get_layer("head_pool").output)
    f = np.asarray(features(uint8_batch(size, n=2).astype("float32")))
    assert np.isfinite(f).all()
    assert f.std() > 1e-3


def test_fine_tuning_mobilenetv2_leaves_batchnorm_statistics_untouched():
    # Keras 3 passes fit's training=True through `base(x, training=False)`; a trainable
    # BatchNorm would then drift its moving averages. Unfrozen blocks train everything else.
    import keras

    weights = SHARED_WEIGHTS / "mobilenet_v2_imagenet_notop.weights.h5"
    model = create_model(
        "mobilenetv2",
        image_size=(64, 64),
        backbone_weights=str(weights) if weights.is_file() else None,
        trainable_blocks=3,
    )
    base = _backbone(model)
    norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and not any(layer.trainable for layer in norms)
    convs = [layer for layer in base.layers if layer.trainable and layer.weights]
    top = ("block_15_", "block_16_", "Conv_1")
    assert convs and all(layer.name.startswith(top) for layer in convs)
    before = [v.numpy().copy() for layer in norms for v in layer.weights]
    conv_before = [w.copy() for layer in convs for w in layer.get_weights()]
    images = np.random.default_rng(0).uniform(0, 255, (16, 64, 64, 3)).astype("float32")
    labels = np.tile([0.0, 1.0], 8).reshape(-1, 1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    model.fit(images, labels, epochs=2, batch_size=8, verbose=0)
    after = [v.numpy() for layer in norms for v in layer.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    if weights.is_file():  # random-init MobileNetV2 activations die out: no gradient to see
        conv_after = [w for layer in convs for w in layer.get_weights()]
        assert any(not np.array_equal(a, b) for a, b in zip(conv_before, conv_after))
