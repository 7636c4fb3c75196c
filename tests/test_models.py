"""Every registered model: builds offline, gives (B, 1) probabilities, saves and reloads."""

import keras
import numpy as np
import pytest
from conftest import SHARED_WEIGHTS

from gender import UserError
from gender.models import create_model, list_models, set_trainable_blocks
from gender.models.layers import SqueezeExcite

# The smallest convenient input per model. cnn7's five valid-conv + pool stages need at least
# 94x94 (at 64x64 the feature map shrinks to nothing); faceresnet's valid strided convolutions
# about 110x110; every other model works at 32x32.
SMALL_SIZE = {"cnn7": (96, 96), "cnn7se": (96, 96), "faceresnet": (112, 112)}


def small_size(name):
    return SMALL_SIZE.get(name, (32, 32))


def uint8_batch(size, n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


RESNETS = ("resnet50", "resnet101", "resnet152")


def test_registry_lists_the_ten_models():
    assert list_models() == [
        "cnn3", "cnn5", "cnn7", "cnn7se", "faceresnet", "mobilenetv2", *sorted(RESNETS),
        "vgg16"]  # fmt: skip


# The deeper ResNets share resnet50's builder; saving and reloading their 43 and 58 M weights takes
# 25-35 s each on 2 idle cores whatever the input size, so the default suite only builds and runs
# them (test_resnet_depths_build_and_run).
DEEP_RESNETS = ("resnet101", "resnet152")


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in DEEP_RESNETS else n for n in list_models()],
)
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


def test_cnn7se_is_cnn7_plus_one_se_block_per_stage():
    cnn7 = create_model("cnn7", image_size=(150, 150))
    model = create_model("cnn7se", image_size=(150, 150))
    assert model.count_params() == 94_397
    se = [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]
    assert [layer.name for layer in se] == ["se1", "se2", "se3", "se4", "se5"]
    # Each block: Dense(C -> C/8) and Dense(C/8 -> C) with biases, for C = 32, 32, 32, 64, 64.
    per_block = [2 * c * (c // 8) + c // 8 + c for c in (32, 32, 32, 64, 64)]
    assert [layer.count_params() for layer in se] == per_block
    assert model.count_params() - cnn7.count_params() == sum(per_block)
    # The SE blocks sit between the stages: same layers otherwise, in the same order.
    others = [layer.name for layer in model.layers if not isinstance(layer, SqueezeExcite)]
    assert others == [layer.name for layer in cnn7.layers]


def test_squeeze_excite_scales_each_channel_by_its_gate():
    layer = SqueezeExcite(ratio=4)
    x = np.random.default_rng(0).uniform(0, 1, (2, 5, 5, 8)).astype("float32")
    y = np.asarray(layer(x))
    w1, b1, w2, b2 = layer.get_weights()
    assert w1.shape == (8, 2) and w2.shape == (2, 8)
    pooled = x.mean(axis=(1, 2))  # squeeze: (B, C)
    gates = 1 / (1 + np.exp(-(np.maximum(pooled @ w1 + b1, 0) @ w2 + b2)))  # excite: (B, C)
    np.testing.assert_allclose(y, x * gates[:, None, None, :], rtol=1e-5, atol=1e-6)
    assert SqueezeExcite.from_config(layer.get_config()).ratio == 4


def test_cnn7se_exports_to_litert_with_the_same_outputs(tmp_path):
    from gender.config import RunRecord
    from gender.export import export_tflite
    from gender.lite import LiteModel

    keras.utils.set_random_seed(0)
    model = create_model("cnn7se", image_size=(96, 96))
    export_tflite(model, tmp_path / "m.tflite")
    lite = LiteModel(tmp_path / "m.tflite", RunRecord(image_size=[96, 96]))
    x = uint8_batch((96, 96), n=4)
    np.testing.assert_allclose(lite.predict(x), model.predict(x, verbose=0), atol=1e-5)


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
    from gender.models.split import split_frozen_prefix

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


# --- ResNets ------------------------------------------------------------------------------------

STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")  # bottom to top; conv1 includes pool1


@pytest.fixture(scope="module")
def resnet50():
    """One random-init ResNet50 at 64x64 (a 2x2 conv5 map); tests set its trainable stages."""
    keras.utils.set_random_seed(0)
    return create_model("resnet50", image_size=(64, 64))


def _stage(layer_name):
    return "conv1" if layer_name.startswith("pool1_") else layer_name.split("_")[0]


@pytest.mark.parametrize(
    "name, blocks, params",
    [
        ("resnet50", (3, 4, 6, 3), 23_589_761),
        ("resnet101", (3, 4, 23, 3), 42_660_225),
        ("resnet152", (3, 8, 36, 3), 58_372_993),
    ],
)
def test_resnet_depths_build_and_run(name, blocks, params):
    model = create_model(name, image_size=(32, 32))  # the smallest input: a 1x1 conv5 map
    assert model.count_params() == params
    outs = {layer.name for layer in _backbone(model).layers if layer.name.endswith("_out")}
    assert outs == {
        f"conv{stage}_block{i}_out" for stage, n in enumerate(blocks, 2) for i in range(1, n + 1)
    }
    y = np.asarray(model(uint8_batch((32, 32)).astype("float32"), training=False))
    assert y.shape == (2, 1) and np.isfinite(y).all() and ((y >= 0) & (y <= 1)).all()


def test_resnet_default_fine_tunes_conv5_only(resnet50):
    base = _backbone(resnet50)
    assert {_stage(n) for n in _trainable_names(base)} == {"conv5"}
    head = [w for w in resnet50.trainable_weights if not any(w is v for v in base.weights)]
    assert {w.path.split("/")[0] for w in head} == {"p_woman"}


@pytest.mark.parametrize("count", range(6))
def test_trainable_blocks_unfreezes_exactly_the_top_resnet_stages(resnet50, count):
    # The trainer's fine-tune phase calls models.set_trainable_blocks on the built model.
    set_trainable_blocks(resnet50, "resnet50", count)
    base = _backbone(resnet50)
    named = set(STAGES[len(STAGES) - count :])
    weighted = [layer for layer in base.layers if layer.weights]
    expected = {
        layer.name
        for layer in weighted
        if _stage(layer.name) in named and not isinstance(layer, keras.layers.BatchNormalization)
    }
    assert _trainable_names(base) == expected
    assert {_stage(n) for n in expected} == named  # every named stage has layers that train
    # BatchNorm never trains (its ImageNet statistics would drift), frozen stages not at all.
    assert not any(
        layer.trainable for layer in weighted if isinstance(layer, keras.layers.BatchNormalization)
    )
    assert len(base.trainable_weights) == sum(len(base.get_layer(n).weights) for n in expected)
    set_trainable_blocks(resnet50, "resnet50", 1)  # back to the default for the other tests


def test_trainable_blocks_counts_five_resnet_stages(resnet50):
    with pytest.raises(UserError, match="--trainable-blocks 6: expected 0..5"):
        set_trainable_blocks(resnet50, "resnet50", 6)


@pytest.mark.parametrize("count, boundary", [(1, "conv4_block6_out"), (2, "conv3_block4_out")])
def test_resnet_frozen_prefix_ends_at_the_last_frozen_stage(resnet50, count, boundary):
    from gender.models.split import split_frozen_prefix

    set_trainable_blocks(resnet50, "resnet50", count)
    prefix, suffix = split_frozen_prefix(resnet50)
    base = _backbone(resnet50)
    assert prefix.output_shape == base.get_layer(boundary).output.shape
    x = uint8_batch((64, 64), n=3).astype("float32")
    full = np.asarray(resnet50(x, training=False))
    np.testing.assert_allclose(np.asarray(suffix(prefix(x), training=False)), full, atol=1e-5)
    assert not prefix.trainable_weights
    assert {id(w) for w in suffix.trainable_weights} == {id(w) for w in resnet50.trainable_weights}
    set_trainable_blocks(resnet50, "resnet50", 1)


def test_resnet_grad_cam_uses_the_last_stage(resnet50):
    from gender.explain import _feature_layer, grad_cam

    outer, inner = _feature_layer(resnet50)
    assert outer is _backbone(resnet50) and inner.name == "conv5_block3_out"
    heatmap, p_woman = grad_cam(resnet50, uint8_batch((64, 64), n=1)[0])
    assert heatmap.shape == (2, 2) and np.isfinite(heatmap).all()
    assert 0 <= heatmap.min() and heatmap.max() <= 1


def test_resnet_preprocessing_is_keras_caffe_step():
    # The layer inside the model must match keras.applications.resnet.preprocess_input.
    from gender.models.layers import CaffePreprocess

    x = uint8_batch((8, 8), n=2).astype("float32")
    expected = keras.applications.resnet.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(CaffePreprocess()(x)), expected, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", RESNETS)
def test_resnet_exports_to_litert_with_the_same_outputs(name, tmp_path):
    # 11, 25 and 70 s on 2 shared CPU cores (130 s for resnet50 under heavy load): the converter
    # walks 24-58 M weights.
    from gender.config import RunRecord
    from gender.export import export_tflite
    from gender.lite import LiteModel

    model = create_model(name, image_size=(64, 64))
    export_tflite(model, tmp_path / "m.tflite")
    lite = LiteModel(tmp_path / "m.tflite", RunRecord(image_size=[64, 64]))
    x = uint8_batch((64, 64), n=4)
    np.testing.assert_allclose(lite.predict(x), model.predict(x, verbose=0), atol=1e-4)


def test_resnet_loads_a_local_weights_file(tmp_path):
    # No ImageNet ResNet file here (no download in tests): a saved random backbone stands in.
    keras.utils.set_random_seed(1)
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "resnet50_notop.weights.h5"
    source.save_weights(path)
    base = _backbone(create_model("resnet50", image_size=(32, 32), backbone_weights=str(path)))
    for a, b in zip(source.get_weights(), base.get_weights()):
        np.testing.assert_array_equal(a, b)


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
