"""Small serializable layers, so saved .keras files load in any script (no Lambda layers)."""

from pathlib import Path

import keras

from gender import UserError

# ImageNet channel means in BGR order, as keras.applications.vgg16.preprocess_input subtracts them.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
# dlib's face-recognition ResNet subtracts its training set's mean RGB and divides by 256
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
EXCITE_BIAS = 2.0  # initial SE gate sigmoid(2) = 0.88 (see SqueezeExcite.build)


@keras.saving.register_keras_serializable(package="gender")
class CaffePreprocess(keras.layers.Layer):
    """VGG16's and ResNet's input step in the graph: RGB 0..255 -> BGR minus the ImageNet means."""

    def call(self, inputs):
        bgr = keras.ops.flip(keras.ops.cast(inputs, self.compute_dtype), axis=-1)
        return bgr - keras.ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)


@keras.saving.register_keras_serializable(package="gender")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-excitation (Hu et al. 2018): reweight each channel by the whole map's content.

    Global average pooling gives one number per channel; Dense(C // ratio, relu) and Dense(C,
    sigmoid) turn it into a weight in 0..1 per channel, multiplied back onto the map. One layer
    rather than a pooling/dense/multiply branch keeps the CNNs a chain (Grad-CAM walks the layers).
    """

    def __init__(self, ratio: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.ratio = ratio

    def build(self, input_shape):
        channels = input_shape[-1]
        self.squeeze = keras.layers.Dense(
            max(channels // self.ratio, 1), activation="relu", name="squeeze"
        )
        # Gates start near 0.88 instead of 0.5: a plain CNN has no skip connection or BatchNorm
        # to restore the scale, and five blocks at 0.5 shrink the features 32x (seen: cnn7se
        # stuck at chance for 4 epochs where cnn7 reached 77%).
        self.excite = keras.layers.Dense(
            channels,
            activation="sigmoid",
            bias_initializer=keras.initializers.Constant(EXCITE_BIAS),
            name="excite",
        )
        self.squeeze.build((input_shape[0], channels))
        self.excite.build((input_shape[0], self.squeeze.units))

    def call(self, inputs):
        pooled = keras.ops.mean(inputs, axis=(1, 2))  # (B, C)
        weights = self.excite(self.squeeze(pooled))  # (B, C) in 0..1
        return inputs * weights[:, None, None, :]

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}


@keras.saving.register_keras_serializable(package="gender")
class DlibInput(keras.layers.Layer):
    """RGB 0..255 -> (RGB - dlib's mean) / 256: dlib's input layer, in the graph."""

    def call(self, inputs):
        x = keras.ops.cast(inputs, self.compute_dtype)
        mean = keras.ops.convert_to_tensor(DLIB_MEAN_RGB, dtype=self.compute_dtype)
        return (x - mean) / 256.0


@keras.saving.register_keras_serializable(package="gender")
class ScaleShift(keras.layers.Layer):
    """Per-channel gamma * x + beta: dlib's "affine" layer, a batch norm frozen into two vectors."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        return inputs * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="gender")
class DlibAdd(keras.layers.Layer):
    """a + b, a smaller input zero-padded at the bottom, the right and in its channels.

    dlib's residual add (`tt::add` in dlib/cuda/cpu_dlib.cpp) works so: where a strided unit's
    branch comes out one row and column smaller than its pooled shortcut (8 -> 3 against 4), or
    with more channels, the missing values count as zero.
    """

    def compute_output_shape(self, input_shapes):
        a, b = input_shapes
        return (a[0],) + tuple(max(x, y) for x, y in zip(a[1:], b[1:]))

    def call(self, inputs):
        a, b = inputs
        target = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:])]

        def pad(x):
            extra = [t - s for t, s in zip(target, x.shape[1:])]
            if not any(extra):
                return x
            return keras.ops.pad(x, [[0, 0]] + [[0, e] for e in extra])

        return pad(a) + pad(b)


def classifier_head(features, dropout: float, hidden: int = 0, name: str = "head"):
    """GAP -> [Dense(hidden, relu)] -> Dropout -> Dense(1, sigmoid) = P(woman)."""
    x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(features)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name=f"{name}_dense")(x)
    x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return keras.layers.Dense(1, activation="sigmoid", name="p_woman")(x)


def transfer_model(
    application,
    image_size,
    backbone_weights,
    blocks,
    trainable_blocks: int,
    preprocess,
    dropout: float,
    name: str,
    hidden: int = 0,
):
    """An ImageNet `keras.applications` backbone without its top, its top `trainable_blocks`
    of `blocks` trainable, between `preprocess` (a layer: raw 0..255 RGB in) and
    `classifier_head`: what every transfer model of the registry is."""
    weights = resolve_backbone_weights(backbone_weights)
    try:
        base = application(include_top=False, weights=weights, input_shape=(*image_size, 3))
    except Exception as err:  # Keras raises a bare Exception("URL fetch failure on ...")
        if weights != "imagenet" or "fetch failure" not in str(err):
            raise

        # offline (or a proxy in the way): one line with the way out, not three chained tracebacks
        raise UserError(
            f"could not download the ImageNet weights of {application.__name__} (no network?); "
            "pass a local copy instead: --backbone-weights PATH/TO/<backbone>_notop.weights.h5 "
            "(or put Keras's file in ~/.keras/models/)"
        ) from None
    set_trainable_blocks(base, blocks, trainable_blocks)
    inputs = keras.Input((*image_size, 3), name="image")
    # training=False: BatchNorm keeps its ImageNet statistics, also while top blocks fine-tune
    # (and set_trainable_blocks keeps BatchNorm frozen: see there).
    x = base(preprocess(inputs), training=False)
    return keras.Model(inputs, classifier_head(x, dropout, hidden=hidden), name=name)


def resolve_backbone_weights(backbone_weights):
    """Pass "imagenet" and None ("none": random init) through; check a local weights file."""
    if backbone_weights in (None, "none"):
        return None
    if backbone_weights == "imagenet":
        return backbone_weights

    path = Path(backbone_weights)
    if not path.is_file():
        raise UserError(f"{path}: backbone weights file not found (use 'imagenet' to download)")
    if not path.name.endswith(".h5"):
        raise UserError(f"{path}: backbone weights must be a Keras .h5 weights file")
    return str(path)


def set_trainable_blocks(base, blocks, count: int) -> None:
    """Freeze a backbone except its top `count` blocks.

    Args:
        blocks: bottom-to-top tuple of blocks, each a tuple of layer-name prefixes.
        count: how many blocks, from the top, train; 0 freezes the whole backbone.
    """
    if not 0 <= count <= len(blocks):
        raise UserError(f"--trainable-blocks {count}: expected 0..{len(blocks)} for {base.name}")
    top = tuple(prefix for block in blocks[len(blocks) - count :] for prefix in block)
    base.trainable = bool(count)
    for layer in base.layers:
        # BatchNorm stays frozen even in the blocks that train. `base(x, training=False)` is not
        # enough in Keras 3: a functional model passes the outer call's training=True down to
        # every nested layer, and a trainable BatchNorm then normalises with batch statistics and
        # drifts its ImageNet moving averages (seen: a face model calling most men women after
        # one fine-tune epoch). A non-trainable BatchNorm always runs in inference mode.
        is_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = bool(top) and layer.name.startswith(top) and not is_norm
