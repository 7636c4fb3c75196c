"""The frozen-prefix cache: run a model's frozen bottom once per image and keep its output.

Every epoch after that runs only the trainable top (see models/split.py). The only augmentation a
cache can keep is one decided before caching: each image is cached in `views` versions (the
original, its mirror image, ...), and each epoch feeds one of them at random.
"""

import os
from pathlib import Path

import numpy as np

from gender.data import MEMORY_BUDGET_BYTES

VIEWS = ("original", "flip")  # the default: the image and its mirror


def compute_features(
    prefix, images, views=VIEWS, batch_size: int = 64, cache_dir=None, augment=None
):
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
    size = (len(views), len(images), *shape)
    nbytes = int(np.prod(size)) * 4
    if nbytes > MEMORY_BUDGET_BYTES and cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        path = Path(cache_dir) / f"features_{os.getpid()}.npy"
        features = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=size)
    else:
        features = np.empty(size, np.float32)
    for v, view in enumerate(views):
        for start in range(0, len(images), batch_size):
            batch = np.asarray(images[start : start + batch_size])
            if view == "flip":
                batch = batch[:, :, ::-1]  # horizontal mirror of (B, H, W, 3)
            elif view == "augment":
                batch = np.asarray(augment(batch))
            features[v, start : start + len(batch)] = prefix.predict_on_batch(batch)
    return features
