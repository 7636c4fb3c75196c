"""ImageNet ResNet50/101/152 (He et al. 2016) with a one-unit head.

The three share one builder; they differ only in how many residual blocks each stage repeats
(conv4: 6, 23, 36). A "block" of --trainable-blocks is a whole stage, counted from the top:
1 = conv5, 2 = conv4 and conv5, ... 5 = every layer including the stem (conv1 + pool1).
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from gender.models import register_model

if TYPE_CHECKING:
    import keras

# Bottom to top, as layer-name prefixes of keras.applications' ResNets. Each stage starts at a
# clean cut (the previous stage's last `_out` activation is the only tensor crossing it), so the
# frozen-prefix cache can stop right below the first stage that trains.
STAGES = (("conv1_", "pool1_"), ("conv2_",), ("conv3_",), ("conv4_",), ("conv5_",))


def build_resnet(
    depth: int,
    image_size: Sequence[int],
    backbone_weights: str | None,
    dropout: float,
    trainable_blocks: int,
) -> "keras.Model":
    """ResNet`depth` backbone, caffe-style preprocessing inside, GAP + Dropout + Dense(1)."""
    import keras

    from gender.models.layers import CaffePreprocess, transfer_model

    application = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101,
                   152: keras.applications.ResNet152}[depth]  # fmt: skip
    # keras.applications.resnet.preprocess_input is the same caffe step as VGG16's.
    return transfer_model(
        application, image_size, backbone_weights, STAGES, trainable_blocks,
        CaffePreprocess(name="caffe_preprocess"), dropout, f"resnet{depth}",
    )  # fmt: skip


@register_model(
    image_size=(128, 128),
    description="ImageNet ResNet50, conv5 fine-tuned, one-unit head",
    blocks=STAGES,
)
def resnet50(
    image_size: Sequence[int] | None = None,
    backbone_weights: str | None = None,
    dropout: float = 0.2,
    trainable_blocks: int = 1,
) -> "keras.Model":
    return build_resnet(50, image_size, backbone_weights, dropout, trainable_blocks)


@register_model(
    image_size=(128, 128),
    description="ImageNet ResNet101, conv5 fine-tuned, one-unit head",
    blocks=STAGES,
)
def resnet101(
    image_size: Sequence[int] | None = None,
    backbone_weights: str | None = None,
    dropout: float = 0.2,
    trainable_blocks: int = 1,
) -> "keras.Model":
    return build_resnet(101, image_size, backbone_weights, dropout, trainable_blocks)


@register_model(
    image_size=(128, 128),
    description="ImageNet ResNet152, conv5 fine-tuned, one-unit head",
    blocks=STAGES,
)
def resnet152(
    image_size: Sequence[int] | None = None,
    backbone_weights: str | None = None,
    dropout: float = 0.2,
    trainable_blocks: int = 1,
) -> "keras.Model":
    return build_resnet(152, image_size, backbone_weights, dropout, trainable_blocks)
