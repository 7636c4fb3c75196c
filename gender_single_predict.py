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

from gender import UserError
from gender.flags import positive_int, tolerant_console
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
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="images per model call; more is faster until memory runs out (default %(default)s)",
    )
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


def main(argv=None) -> int:
    tolerant_console()
    args = build_parser().parse_args(argv)
    try:
        return predict(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def predict(args) -> int:
    import numpy as np

    from gender.atomic import check_output, write_text
    from gender.data import Samples
    from gender.export import check_image_size
    from gender.images import parse_image_size
    from gender.predict import (
        default_weights,
        detects_faces,
        expand_inputs,
        load_model,
        predict_samples,
        predicted_class,
        print_face_predictions,
        verdict,
        write_pictures,
    )

    inputs, weights = list(args.inputs), args.weights
    if len(inputs) > 1 and inputs[-1].endswith((".keras", ".h5", ".tflite")) and not weights:
        weights = inputs.pop()
    paths = expand_inputs(inputs)
    for output in (args.csv, args.annotate, args.explain):
        if output:
            check_output(output, [*inputs, *paths, *([weights] if weights else [])])
    # Grad-CAM needs the gradients of the Keras model; the TFLite export has none.
    backend = "keras" if args.explain else args.backend
    model, info = load_model(weights or default_weights(args.task), backend)
    size = check_image_size(info, parse_image_size(args.image_size) if args.image_size else None)
    single = len(inputs) == 1 and Path(inputs[0]).is_file()
    if (args.annotate or args.explain) and not single:
        raise UserError("--annotate and --explain need exactly one image file")
    if detects_faces(args, info, inputs):
        return print_face_predictions(model, paths, size, args, single)
    samples = Samples(paths, np.zeros(len(paths), np.int64))  # labels unknown here
    # One bad image alone is an error naming it; among many it is reported and skipped.
    p_woman, kept = predict_samples(model, samples, size, args.batch_size, skip_bad=len(paths) > 1)

    if single and not args.csv:
        print(f"{kept.paths[0]}: {verdict(p_woman[0])}")
    if args.annotate or args.explain:
        from gender.faces import whole_image_face
        from gender.images import read_image

        rgb = read_image(paths[0])
        write_pictures(
            args, model, rgb, size, [(whole_image_face(rgb), p_woman[0])], detected=False
        )
    if single and not args.csv:
        return 0
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "label", "probability", "p_woman"])
    for path, p in zip(kept.paths, p_woman):
        label, probability = predicted_class(p)
        writer.writerow([path, label, f"{probability:.4f}", f"{p:.4f}"])
    if args.csv:
        write_text(args.csv, buffer.getvalue())
        print(f"{len(kept)} predictions written to {args.csv}")
    else:
        sys.stdout.write(buffer.getvalue())
    return 0 if len(kept) == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main())
