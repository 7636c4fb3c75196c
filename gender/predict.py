"""Run a trained model over image files, in chunks, skipping (and reporting) unreadable ones.

Also what gender_single_predict.py prints per image or face, and its --annotate/--explain pictures.
Importing this module does not import TensorFlow: with a .tflite export beside the weights,
`load_model` runs it with LiteRT and a prediction never pays TensorFlow's start-up time.
"""

import csv
import io
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from gender import CLASS_NAMES, TASKS, UserError  # noqa: F401  TASKS re-exported for the CLIs
from gender.data import Samples, decode_images, warn
from gender.export import PRETRAINED_DIR, resolve_weights

CHUNK = 512  # images decoded at a time: bounded memory on folders of any size
BACKENDS = ("auto", "lite", "keras")
NO_FACE = 3  # exit status when an image holds no face: distinct from errors


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
    from gender.faces import Progress

    probabilities, kept_paths, kept_labels = [], [], []
    starts = range(0, len(samples), CHUNK)
    # one chunk is a few seconds at most; longer runs say how far they are (stderr)
    progress = Progress(len(samples), "predicting") if len(starts) > 1 else None

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
            if progress:
                progress.update(min(starts[k] + CHUNK, len(samples)))
    if progress:
        progress.done()
    if not kept_paths:
        raise UserError("none of the images could be read")
    kept = Samples(kept_paths, np.concatenate(kept_labels))
    return np.concatenate(probabilities).astype(float), kept


def predicted_class(p_woman: float) -> tuple[str, float]:
    """The predicted class name and the probability of that class."""
    is_woman = p_woman >= 0.5
    return CLASS_NAMES[int(is_woman)], p_woman if is_woman else 1 - p_woman


def verdict(p: float) -> str:
    """One image's or face's answer in words, as the single-image lines print it."""
    label, probability = predicted_class(p)
    return f"{label} (probability {probability:.3f}, P(woman) = {p:.3f})"


def detects_faces(args, info, inputs) -> bool:
    """Detect in photos of a face model; folders are usually crops, so only on request."""
    from gender.faces import model_task, require_face_model

    if args.no_detect:
        return False
    if args.detect_faces:
        require_face_model(info)
    if model_task(info) != "face":
        return False
    return args.detect_faces or not any(Path(item).is_dir() for item in inputs)


def print_face_predictions(model, paths, size, args, single: bool) -> int:
    """One line (or CSV row) per face; an image without a face says so, with status NO_FACE.

    Args:
        args: gender_single_predict.py's flags (batch_size, csv, annotate, explain).
        single: `paths` is the one image file given, so lines are printed instead of CSV.

    Returns:
        The exit status: 0, 1 if some images were unreadable, else NO_FACE if one had no face.
    """
    from gender.atomic import write_text
    from gender.faces import predict_faces
    from gender.images import BadImageError, read_image

    rows, unreadable, faceless = [], 0, 0
    for path in paths:
        try:
            rgb = read_image(path)
        except BadImageError as err:
            if single:
                raise
            warn(f"{err} (skipped)")
            unreadable += 1
            continue
        found = predict_faces(model, rgb, size, args.batch_size)
        faceless += not found
        rows += [(path, i, face, p) for i, (face, p) in enumerate(found, 1)] or [(path, 0, None, 0)]
    if single and not args.csv:
        if not found:
            print(f"{paths[0]}: no face found (--no-detect classifies the whole image)")
            return NO_FACE
        for path, i, face, p in rows:
            box = ",".join(str(round(v)) for v in face.box)
            print(f"{path}: face {i} at x1,y1,x2,y2 = {box}: {verdict(p)}")
        write_pictures(args, model, rgb, size, found, detected=True)
        return 0
    if single and found:
        write_pictures(args, model, rgb, size, found, detected=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "face", "x1", "y1", "x2", "y2", "label", "probability", "p_woman"])
    for path, i, face, p in rows:
        if face is None:
            writer.writerow([path, 0, "", "", "", "", "no face", "", ""])
        else:
            label, probability = predicted_class(p)
            box = [round(v) for v in face.box]
            writer.writerow([path, i, *box, label, f"{probability:.4f}", f"{p:.4f}"])
    if args.csv:
        write_text(args.csv, buffer.getvalue())
        print(f"{len(rows) - faceless} faces in {len(paths) - unreadable} images -> {args.csv}")
    else:
        sys.stdout.write(buffer.getvalue())
    if faceless:
        print(f"{faceless} image(s) with no face found", file=sys.stderr)
    return 1 if unreadable else NO_FACE if faceless else 0


def write_pictures(args, model, rgb, size, predictions, detected: bool) -> None:
    """Write --annotate (boxes and labels) and --explain (Grad-CAM) for one image.

    Args:
        predictions: (Face, p_woman) pairs; detected=False means one whole-image Face.
    """
    from gender.faces import draw_faces, write_image

    if args.annotate:
        labels = ["{} {:.2f}".format(*predicted_class(p)) for _, p in predictions]
        write_image(args.annotate, draw_faces(rgb, [face for face, _ in predictions], labels))
        print(f"boxes and labels drawn in {args.annotate}")
    if args.explain:
        from gender.explain import add_legend, explain_image

        faces = [face for face, _ in predictions] if detected else None
        text = ", ".join("{} {:.2f}".format(*predicted_class(p)) for _, p in predictions)
        picture = add_legend(explain_image(model, rgb, size, faces), f"Grad-CAM of {text}")
        write_image(args.explain, picture)
        print(f"Grad-CAM heatmap written to {args.explain}")


def expand_inputs(inputs) -> list[str]:
    """Files as given; folders as every image file below them, sorted (gender.data.walk_images)."""
    from gender.data import walk_images

    paths = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [str(p) for p in walk_images(path, report_other=False)]
            if not found:
                raise UserError(f"{path}: no image files in this folder")
            paths += found
        elif path.is_file():
            paths.append(str(path))
        elif path.exists():  # never opened: a pipe would wait for a writer for ever
            raise UserError(f"{path}: not a regular file (a named pipe, socket or device)")
        else:
            raise UserError(f"{path}: no such file or folder")
    return paths
