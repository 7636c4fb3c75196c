"""Run a trained model over image files, in chunks, skipping (and reporting) unreadable ones."""

import numpy as np

from gender import TASKS, UserError  # noqa: F401  TASKS re-exported for the CLIs
from gender.data import Samples, decode_images
from gender.export import PRETRAINED_DIR

CHUNK = 512  # images decoded at a time: bounded memory on folders of any size


def default_weights(task: str):
    """The bundled model for `task` (weights/pretrained/<task>.keras)."""
    path = PRETRAINED_DIR / f"{task}.keras"
    if not path.is_file():
        raise UserError(
            f"no weights given and no bundled model at {path}; pass a WEIGHTS file "
            "(e.g. weights/<run>/best.keras from gender_train.py)"
        )
    return path


def predict_samples(model, samples: Samples, size, batch_size: int = 64, skip_bad=True):
    """P(woman) for every readable image.

    With skip_bad=False a bad image is an error instead of a warning.

    Returns:
        (p_woman, kept): p_woman (N,) float in [0, 1] for the N images of `kept` that decoded.
    """
    probabilities, kept_paths, kept_labels = [], [], []
    for start in range(0, len(samples), CHUNK):
        chunk = samples.subset(range(start, min(start + CHUNK, len(samples))))
        try:
            images, chunk = decode_images(chunk, size, skip_bad=skip_bad)
        except UserError:
            if not skip_bad:
                raise
            continue  # every image of this chunk was bad (each already reported)
        probabilities.append(model.predict(images, batch_size=batch_size, verbose=0).ravel())
        kept_paths += chunk.paths
        kept_labels.append(chunk.labels)
    if not kept_paths:
        raise UserError("none of the images could be read")
    kept = Samples(kept_paths, np.concatenate(kept_labels))
    return np.concatenate(probabilities).astype(float), kept
