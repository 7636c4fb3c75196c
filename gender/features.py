"""The frozen-prefix cache: run a model's frozen bottom once per image and keep its output.

Every epoch after that runs only the trainable top (see models/split.py). The only augmentation a
cache can keep is one decided before caching: each image is cached in `views` versions (the
original, its mirror image, ...), and each epoch feeds one of them at random.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender.console import Progress
from gender.data import new_array

if TYPE_CHECKING:
    import keras

VIEWS = ("original", "flip")  # the default: the image and its mirror


def compute_features(
    prefix: "keras.Model",
    images: np.ndarray,
    views: Sequence[str] = VIEWS,
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    augment: Callable | None = None,
) -> list[np.ndarray]:
    """Prefix outputs for every image and view.

    Args:
        prefix: a Keras model, raw RGB in.
        images: (N, H, W, 3) uint8.
        views: each "original", "flip" (mirror image) or "augment" (one draw of `augment`).
        augment: fn(uint8 batch) -> augmented batch, for "augment" views.

    Returns:
        (V, N, *feature_shape) float32: in RAM when it fits MEMORY_BUDGET_BYTES, else a
        np.memmap file in `cache_dir`.
    """
    shape = tuple(prefix.output_shape[1:])
    features = new_array((len(views), len(images), *shape), np.float32, cache_dir)
    # a large set takes minutes per view on a CPU (a deep backbone, tens of thousands of images)
    progress = Progress(len(views) * len(images), "caching")
    for v, view in enumerate(views):
        for start in range(0, len(images), batch_size):
            progress.update(v * len(images) + start)
            batch = np.asarray(images[start : start + batch_size])
            if view == "flip":
                batch = batch[:, :, ::-1]  # horizontal mirror of (B, H, W, 3)
            elif view == "augment":
                batch = np.asarray(augment(batch))
            features[v, start : start + len(batch)] = prefix.predict_on_batch(batch)
    progress.done()
    return features
