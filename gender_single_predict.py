"""Predict man or woman for one image (or several, or a folder: then one CSV row per image).

python gender_single_predict.py test1.jpg weights/cnn7-20261122-101500/best.keras
python gender_single_predict.py photos/ --weights best.keras --csv predictions.csv
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
        "when there is one, else Keras (default auto)",
    )
    parser.add_argument(
        "--no-detect",
        action="store_true",
        help="the images are face crops already (face detection comes with the faces feature)",
    )
    return parser


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
    model, info = load_model(weights or default_weights(args.task), args.backend)
    size = check_image_size(info, parse_image_size(args.image_size) if args.image_size else None)
    samples = Samples(paths, np.zeros(len(paths), np.int64))  # labels unknown here
    # One bad image alone is an error naming it; among many it is reported and skipped.
    p_woman, kept = predict_samples(model, samples, size, args.batch_size, skip_bad=len(paths) > 1)

    if len(inputs) == 1 and Path(inputs[0]).is_file() and not args.csv:
        p = p_woman[0]
        label = CLASS_NAMES[int(p >= 0.5)]
        print(f"{kept.paths[0]}: {label} (probability {max(p, 1 - p):.3f}, P(woman) = {p:.3f})")
        return 0
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "label", "probability", "p_woman"])
    for path, p in zip(kept.paths, p_woman):
        writer.writerow([path, CLASS_NAMES[int(p >= 0.5)], f"{max(p, 1 - p):.4f}", f"{p:.4f}"])
    if args.csv:
        write_text(args.csv, buffer.getvalue())
        print(f"{len(kept)} predictions written to {args.csv}")
    else:
        sys.stdout.write(buffer.getvalue())
    return 0 if len(kept) == len(paths) else 1


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
