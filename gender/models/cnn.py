"""Small from-scratch CNNs: stacks of 3x3 conv + 2x2 max-pool, dense 64, one sigmoid.

cnn3: the first network of the pedestrian project the toolkit started from (convs 32, 32, 64).
cnn5: the original 5-layer network (3 convs of 32 + 2 dense layers).
cnn7: the original 7-layer network (convs 32, 32, 32, 64, 64 + 2 dense); 91,329 parameters
    at 150x150.
cnn7se: cnn7 with a squeeze-and-excitation block ending each conv stage (Hu et al. 2018);
    94,397 parameters at 150x150.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gender import UserError
from gender.models import register_model

if TYPE_CHECKING:
    import keras

SE_RATIO = 8  # channel bottleneck of the SE blocks: Hu et al. use 16, but 32 / 16 is only 2 units


def build_cnn(
    filters: Sequence[int],
    image_size: Sequence[int],
    dropout: float = 0.5,
    name: str = "cnn",
    se: bool = False,
) -> "keras.Model":
    """Conv 3x3 (valid) + ReLU + max-pool 2 per entry of `filters`; Flatten, Dense 64, sigmoid.

    Args:
        filters: output channels of each conv stage; its length is the depth.
        se: end each stage with a squeeze-and-excitation block, after the pooling: a positive
            per-channel scale commutes with max-pooling, and there it runs on 4x fewer pixels.
    """
    import keras

    smallest = 1  # each stage needs 2 * (its output) + 2 pixels: cnn3 22, cnn5 22, cnn7 94
    for _ in filters:
        smallest = 2 * smallest + 2
    if min(image_size) < smallest:
        raise UserError(
            f"--image-size {image_size[0]}x{image_size[1]}: too small for {name} "
            f"({len(filters)} conv + pool stages need at least {smallest}x{smallest})"
        )
    inputs = keras.Input((*image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)  # raw 0..255 -> 0..1
    for i, width in enumerate(filters, 1):
        x = keras.layers.Conv2D(width, 3, activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
        if se:
            from gender.models.layers import SqueezeExcite

            x = SqueezeExcite(SE_RATIO, name=f"se{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="p_woman")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model(
    image_size=(128, 64), description="3 conv (32,32,64), the original pedestrian network"
)
def cnn3(
    image_size: Sequence[int] | None = None,
    backbone_weights: str | None = None,
    dropout: float = 0.5,
    trainable_blocks: int | None = None,
) -> "keras.Model":
    return build_cnn((32, 32, 64), image_size, dropout, name="cnn3")


@register_model(
    image_size=(150, 150), description="3 conv (32,32,32) + 2 dense, the original 5-layer network"
)
def cnn5(
    image_size: Sequence[int] | None = None,
    backbone_weights: str | None = None,
    dropout: float = 0.5,
    trainable_blocks: int | None = None,
) -> "keras.Model":
    return build_cnn((32, 32, 32), image_size, dropout, name="cnn5")


@register_model(
    image_size=(150, 150),
    description="5 conv (32,32,32,64,64) + 2 dense, the original 7-layer network",
)
def cnn7(
    image_size: Sequence[int] | None = None,
    backbone_weights: str | None = None,
    dropout: float = 0.5,
    trainable_blocks: int | None = None,
) -> "keras.Model":
    return build_cnn((32, 32, 32, 64, 64), image_size, dropout, name="cnn7")


@register_model(
    image_size=(150, 150), description="cnn7 with a squeeze-and-excitation block per conv stage"
)
def cnn7se(
    image_size: Sequence[int] | None = None,
    backbone_weights: str | None = None,
    dropout: float = 0.5,
    trainable_blocks: int | None = None,
) -> "keras.Model":
    return build_cnn((32, 32, 32, 64, 64), image_size, dropout, name="cnn7se", se=True)
