"""Predict man or woman for each face in a photo (or several, or a folder: then CSV rows).

python gender_single_predict.py photo.jpg weights/cnn7-20261122-101500/best.keras
python gender_single_predict.py photo.jpg --annotate boxes.jpg --explain heatmap.png
python gender_single_predict.py crops/ --weights best.keras --csv predictions.csv
Exit status: 0 done, 1 some images unreadable, 2 error, 3 an image without a face.
"""

import argparse
import csv
import io
import sys
from pathlib import Path

from gender import CLASS_NAMES, UserError
from gender.predict import BACKENDS, TASKS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE",
        help="image files or folders; a last argument ending in .keras or .h5 "
        "(or .tflite) is taken as WEIGHTS (the seeds' 'IMAGE WEIGHTS' order)",
    )
    parser.add_argument(
        "--weights", help="a .keras model or run folder (default: the bundled --task model)"
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="face",
        help="bundled model to use when no weights are given (default face)",
    )
    parser.add_argument("--image-size", help="must match the model's; read from run.json")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--csv", metavar="PATH", help="write the CSV here instead of stdout")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: the .tflite export beside the weights with LiteRT (no TensorFlow start-up) "
        "when there is one, else Keras; --explain always uses Keras (default auto)",
    )
    parser.add_argument(
        "--no-detect",
        action="store_true",
        help="classify each whole image as it is (for crops; pedestrian models never detect)",
    )
    parser.add_argument(
        "--detect-faces",
        action="store_true",
        help="detect faces in folders too (by default only image files are searched for faces)",
    )
    parser.add_argument("--annotate", metavar="OUT.jpg", help="one image: draw boxes and labels")
    parser.add_argument(
        "--explain", metavar="OUT.png", help="one image: Grad-CAM heatmap of the predicted class"
    )
    return parser


NO_FACE = 3  # exit status when an image holds no face: distinct from errors


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return predict(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def predict(args) -> int:
    import numpy as np

    from gender.atomic import write_text
    from gender.data import Samples
    from gender.export import check_image_size
    from gender.images import parse_image_size
    from gender.predict import default_weights, load_model, predict_samples

    inputs, weights = list(args.inputs), args.weights
    if len(inputs) > 1 and inputs[-1].endswith((".keras", ".h5", ".tflite")) and not weights:
        weights = inputs.pop()
    paths = _expand(inputs)
    # Grad-CAM needs the gradients of the Keras model; the TFLite export has none.
    backend = "keras" if args.explain else args.backend
    model, info = load_model(weights or default_weights(args.task), backend)
    size = check_image_size(info, parse_image_size(args.image_size) if args.image_size else None)
    single = len(inputs) == 1 and Path(inputs[0]).is_file()
    if (args.annotate or args.explain) and not single:
        raise UserError("--annotate and --explain need exactly one image file")
    if _detects_faces(args, info, inputs):
        return _predict_faces(model, paths, size, args, single)
    samples = Samples(paths, np.zeros(len(paths), np.int64))  # labels unknown here
    # One bad image alone is an error naming it; among many it is reported and skipped.
    p_woman, kept = predict_samples(model, samples, size, args.batch_size, skip_bad=len(paths) > 1)

    if single and not args.csv:
        print(f"{kept.paths[0]}: {_verdict(p_woman[0])}")
    if args.annotate or args.explain:
        from gender.faces import whole_image_face
        from gender.images import read_image

        rgb = read_image(paths[0])
        _pictures(args, model, rgb, size, [(whole_image_face(rgb), p_woman[0])], detected=False)
    if single and not args.csv:
        return 0
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "label", "probability", "p_woman"])
    for path, p in zip(kept.paths, p_woman):
        label, probability = _label(p)
        writer.writerow([path, label, f"{probability:.4f}", f"{p:.4f}"])
    if args.csv:
        write_text(args.csv, buffer.getvalue())
        print(f"{len(kept)} predictions written to {args.csv}")
    else:
        sys.stdout.write(buffer.getvalue())
    return 0 if len(kept) == len(paths) else 1


def _label(p_woman: float) -> tuple[str, float]:
    """The predicted class name and the probability of that class."""
    is_woman = p_woman >= 0.5
    return CLASS_NAMES[int(is_woman)], p_woman if is_woman else 1 - p_woman


def _verdict(p: float) -> str:
    label, probability = _label(p)
    return f"{label} (probability {probability:.3f}, P(woman) = {p:.3f})"


def _detects_faces(args, info, inputs) -> bool:
    """Detect in photos of a face model; folders are usually crops, so only on request."""
    from gender.faces import model_task, require_face_model

    if args.no_detect:
        return False
    if args.detect_faces:
        require_face_model(info)
    if model_task(info) != "face":
        return False
    return args.detect_faces or not any(Path(item).is_dir() for item in inputs)


def _predict_faces(model, paths, size, args, single: bool) -> int:
    """One line (or CSV row) per face; an image without a face says so, with status NO_FACE."""
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
            print(f"warning: {err} (skipped)", file=sys.stderr)
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
            print(f"{path}: face {i} at x1,y1,x2,y2 = {box}: {_verdict(p)}")
        _pictures(args, model, rgb, size, found, detected=True)
        return 0
    if single and found:
        _pictures(args, model, rgb, size, found, detected=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "face", "x1", "y1", "x2", "y2", "label", "probability", "p_woman"])
    for path, i, face, p in rows:
        if face is None:
            writer.writerow([path, 0, "", "", "", "", "no face", "", ""])
        else:
            label, probability = _label(p)
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


def _pictures(args, model, rgb, size, predictions, detected: bool) -> None:
    """Write --annotate (boxes and labels) and --explain (Grad-CAM) for one image."""
    from gender.faces import draw_faces, write_image

    if args.annotate:
        labels = ["{} {:.2f}".format(*_label(p)) for _, p in predictions]
        write_image(args.annotate, draw_faces(rgb, [face for face, _ in predictions], labels))
        print(f"boxes and labels drawn in {args.annotate}")
    if args.explain:
        from gender.explain import explain_image

        faces = [face for face, _ in predictions] if detected else None
        write_image(args.explain, explain_image(model, rgb, size, faces))
        print(f"Grad-CAM heatmap written to {args.explain}")


def _expand(inputs) -> list[str]:
    """Files as given; folders as every image file below them, sorted."""
    from gender.images import is_image_file

    paths = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                raise UserError(f"{path}: no image files in this folder")
            paths += found
        elif path.exists():
            paths.append(str(path))
        else:
            raise UserError(f"{path}: no such file or folder")
    return paths


if __name__ == "__main__":
    sys.exit(main())
