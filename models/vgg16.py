"""ImageNet VGG16 with a small dense classifier (the pedestrian seed's second network)."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from models import register_model

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

    from models.layers import (
        CaffePreprocess,
        classifier_head,
        resolve_backbone_weights,
        set_trainable_blocks,
    )

    base = keras.applications.VGG16(
        include_top=False,
        weights=resolve_backbone_weights(backbone_weights),
        input_shape=(*image_size, 3),
    )
    set_trainable_blocks(base, BLOCKS, trainable_blocks)
    inputs = keras.Input((*image_size, 3), name="image")
    x = CaffePreprocess(name="caffe_preprocess")(inputs)
    # training=False keeps any backbone layer in inference mode even while its weights train.
    x = base(x, training=False)
    return keras.Model(inputs, classifier_head(x, dropout, hidden=256), name="vgg16")
