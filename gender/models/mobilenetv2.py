"""ImageNet MobileNetV2 with a one-unit head (the best ImageNet backbone on unseen people)."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gender.models import register_model

if TYPE_CHECKING:
    import keras

# Bottom to top, as layer-name prefixes; the last block is the final 1x1 conv with its BN and ReLU.
BLOCKS = (
    (("Conv1", "bn_Conv1", "expanded_conv_"),)
    + tuple((f"block_{i}_",) for i in range(1, 17))
    + (("Conv_1", "out_relu"),)
)


@register_model(
    image_size=(128, 128),
    description="ImageNet MobileNetV2, frozen, one-unit head",
    blocks=BLOCKS,
)
def mobilenetv2(
    image_size: Sequence[int] | None = None,
    backbone_weights: str | None = None,
    dropout: float = 0.2,
    trainable_blocks: int = 0,
) -> "keras.Model":
    import keras

    from gender.models.layers import transfer_model

    return transfer_model(
        keras.applications.MobileNetV2, image_size, backbone_weights, BLOCKS, trainable_blocks,
        keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_to_pm1"),
        dropout, "mobilenetv2",
    )  # fmt: skip
