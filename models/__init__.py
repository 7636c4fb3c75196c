"""The model registry: every network the toolkit trains, by short name.

Every builder has the same contract:
    build(image_size=None, backbone_weights=None, dropout=0.5, trainable_blocks=None) -> keras.Model
- input: raw RGB, (B, H, W, 3) in 0..255 (uint8 or float); each model scales its own input;
- output: (B, 1) sigmoid, P(woman) (label 1 of gender.CLASS_NAMES);
- backbone_weights: None (random), "imagenet" (Keras download) or a local .weights.h5 path;
  ignored by the from-scratch CNNs;
- trainable_blocks: how many top backbone blocks train (0 = frozen backbone); None = model default.
"""

import os
from dataclasses import dataclass
from typing import Callable

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@dataclass(frozen=True)
class ModelEntry:
    build: Callable
    image_size: tuple[int, int]  # default (height, width)
    description: str
    learning_rate: float  # default Adam rate for the default trainable part


MODELS: dict[str, ModelEntry] = {}


def register_model(image_size: tuple[int, int], description: str, learning_rate: float = 1e-3):
    """Register a builder under its function name with its default input size and rate."""

    def decorator(build):
        MODELS[build.__name__] = ModelEntry(build, tuple(image_size), description, learning_rate)
        return build

    return decorator


def list_models() -> list[str]:
    return sorted(MODELS)


def get_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    return MODELS[name]


def create_model(name: str, image_size=None, **kwargs):
    """Build model `name` at `image_size` (height, width), default the model's own size."""
    entry = get_entry(name)
    return entry.build(image_size=tuple(image_size or entry.image_size), **kwargs)


# Imported last: their decorators fill MODELS.
from models import cnn, mobilenetv2, vgg16  # noqa: E402,F401
