"""ImageNet VGG16 with a small dense classifier (the original pedestrian project's 2nd network)."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gender.models import register_model

if TYPE_CHECKING:
    import keras

BLOCKS = tuple((f"block{i}_",) for i in range(1, 6))  # bottom to top


@register_model(
    image_size=(128, 128),
    description="ImageNet VGG16, block 5 fine-tuned + dense 256",
    blocks=BLOCKS,
)
def vgg16(
    image_size: Sequence[int] | None = None,
    backbone_weights: str | None = None,
    dropout: float = 0.5,
    trainable_blocks: int = 1,
) -> "keras.Model":
    import keras

    from gender.models.layers import CaffePreprocess, transfer_model

    return transfer_model(
        keras.applications.VGG16, image_size, backbone_weights, BLOCKS, trainable_blocks,
        CaffePreprocess(name="caffe_preprocess"), dropout, "vgg16", hidden=256,
    )  # fmt: skip
