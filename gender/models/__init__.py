"""The model registry: every network the toolkit trains, by short name.

Every builder has the same contract:
    build(image_size=None, backbone_weights=None, dropout=0.5, trainable_blocks=None) -> keras.Model
- input: raw RGB, (B, H, W, 3) in 0..255 (uint8 or float); each model scales its own input;
- output: (B, 1) sigmoid, P(woman) (label 1 of gender.CLASS_NAMES);
- backbone_weights: None (random), "imagenet" (Keras download) or a local .weights.h5 path;
  ignored by the from-scratch CNNs;
- trainable_blocks: how many top backbone blocks train (0 = frozen backbone); the builder's
  default is the model's default.
"""

import inspect

__all__ = [
    "MODELS",
    "ModelEntry",
    "compile_model",
    "create_model",
    "default_trainable_blocks",
    "get_entry",
    "list_models",
    "register_model",
    "set_trainable_blocks",
]

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class ModelEntry:
    build: Callable
    image_size: tuple[int, int]  # default (height, width)
    description: str
    learning_rate: float  # default Adam rate (for the head of a transfer model)
    blocks: tuple = ()  # backbone blocks, bottom to top, as layer-name prefixes (transfer models)


MODELS: dict[str, ModelEntry] = {}


def register_model(
    image_size: tuple[int, int], description: str, learning_rate: float = 1e-3, blocks: tuple = ()
) -> Callable[[Callable], Callable]:
    """Register a builder under its function name with its defaults and backbone blocks."""

    def decorator(build):
        MODELS[build.__name__] = ModelEntry(
            build, tuple(image_size), description, learning_rate, blocks
        )
        return build

    return decorator


def list_models() -> list[str]:
    return sorted(MODELS)


def get_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    return MODELS[name]


def create_model(
    name: str, image_size: Sequence[int] | None = None, **kwargs: object
) -> "keras.Model":
    """Build model `name` at `image_size` (height, width), default the model's own size.

    A keyword given as None takes the builder's default.
    """
    entry = get_entry(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return entry.build(image_size=tuple(image_size or entry.image_size), **kwargs)


def default_trainable_blocks(name: str) -> int:
    """How many top backbone blocks model `name` fine-tunes by default (0 for no backbone)."""
    default = inspect.signature(get_entry(name).build).parameters["trainable_blocks"].default
    return default or 0


def compile_model(model: "keras.Model", learning_rate: float, label_smoothing: float = 0.0) -> None:
    """Compile for training as every trainer does: Adam, binary cross-entropy on P(woman)
    (towards smoothed targets with `label_smoothing`), accuracy. Also the custom distributed
    step, so its .keras checkpoints carry the same optimizer and loss as model.fit's."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )


def set_trainable_blocks(model: "keras.Model", name: str, count: int) -> None:
    """Let the top `count` backbone blocks of a built (or loaded) model `name` train."""
    import keras

    from gender.models.layers import set_trainable_blocks as set_blocks

    entry = get_entry(name)
    backbone = next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)
    if backbone is None or not entry.blocks:
        raise ValueError(f"model {name!r} has no pretrained backbone to freeze or unfreeze")
    set_blocks(backbone, entry.blocks, count)


# Imported last: their decorators fill MODELS. They import Keras only when a model is built, so
# listing the names (argparse choices, --help) does not load TensorFlow.
from gender.models import cnn, faceresnet, mobilenetv2, resnet, vgg16  # noqa: E402,F401
