"""Run a trained model over image files, in chunks, skipping (and reporting) unreadable ones.

Importing this module does not import TensorFlow: with a .tflite export beside the weights,
`load_model` runs it with LiteRT and a prediction never pays TensorFlow's start-up time.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gender import TASKS, UserError  # noqa: F401  TASKS re-exported for the CLIs
from gender.data import Samples, decode_images
from gender.export import PRETRAINED_DIR, resolve_weights

CHUNK = 512  # images decoded at a time: bounded memory on folders of any size
BACKENDS = ("auto", "lite", "keras")


def default_weights(task: str):
    """The bundled model for `task` (weights/pretrained/<task>.keras)."""
    path = PRETRAINED_DIR / f"{task}.keras"
    if not path.is_file():
        raise UserError(
            f"no weights given and no bundled model at {path}; pass a WEIGHTS file "
            "(e.g. weights/<run>/best.keras from gender_train.py)"
        )
    return path


def load_model(weights, backend: str = "auto"):
    """Load weights for prediction: (model, info), model having Keras' `predict(images)`.

    Args:
        backend: "lite" runs the .tflite export beside the weights (face.keras -> face.tflite)
            with LiteRT; "keras" loads the .keras file with TensorFlow; "auto" takes the
            export when there is one and ai_edge_litert is installed, else Keras.
    """
    from gender import lite

    path = resolve_weights(weights)
    if backend != "keras" and lite.lite_files(path):
        if lite.available():
            model, info = lite.load_lite(path)
            info["backend"] = "lite"
            return model, info
        if backend == "lite":
            raise UserError("--backend lite needs the ai-edge-litert package (pip install it)")
    elif backend == "lite":
        raise UserError(
            f"{path}: no .tflite export beside it; run python gender_train.py --export {path}"
        )
    from gender.export import load_trained

    model, info = load_trained(path)
    info["backend"] = "keras"
    return model, info


def predict_samples(model, samples: Samples, size, batch_size: int = 64, skip_bad=True):
    """P(woman) for every readable image.

    With skip_bad=False a bad image is an error instead of a warning.

    Returns:
        (p_woman, kept): p_woman (N,) float in [0, 1] for the N images of `kept` that decoded.
    """
    probabilities, kept_paths, kept_labels = [], [], []
    starts = range(0, len(samples), CHUNK)

    def decode(start):
        chunk = samples.subset(range(start, min(start + CHUNK, len(samples))))
        return decode_images(chunk, size, skip_bad=skip_bad)

    # Decode chunk k+1 while the model runs on chunk k: OpenCV and the model both release the GIL.
    with ThreadPoolExecutor(1) as ahead:
        pending = ahead.submit(decode, starts[0]) if starts else None
        for k in range(len(starts)):
            try:
                images, chunk = pending.result()
            except UserError:
                if not skip_bad:
                    raise
                images = None  # every image of this chunk was bad (each already reported)
            pending = ahead.submit(decode, starts[k + 1]) if k + 1 < len(starts) else None
            if images is None:
                continue
            probabilities.append(model.predict(images, batch_size=batch_size, verbose=0).ravel())
            kept_paths += chunk.paths
            kept_labels.append(chunk.labels)
    if not kept_paths:
        raise UserError("none of the images could be read")
    kept = Samples(kept_paths, np.concatenate(kept_labels))
    return np.concatenate(probabilities).astype(float), kept
