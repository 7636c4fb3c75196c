"""Predict man or woman for each face in a photo (or several, or a folder: then CSV rows).

python gender_single_predict.py photo.jpg weights/cnn7-20261122-101500/best.keras
python gender_single_predict.py photo.jpg --annotate boxes.jpg --explain heatmap.png
python gender_single_predict.py crops/ --weights best.keras --csv predictions.csv
python gender_single_predict.py photo.jpg --uncertain 0.3:0.7   # no answer when unsure
Exit status: 0 done, 1 some images unreadable, 2 error, 3 an image without a face.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from gender import THRESHOLD, UserError
from gender.atomic import check_outputs, check_space
from gender.console import run_cli, warn
from gender.data import Samples, expand_inputs
from gender.flags import (
    Parser,
    add_common_flags,
    add_min_face_flag,
    add_model_flags,
    add_ray_flag,
    add_uncertain_flag,
    apply_common_flags,
    probability,
    resolve_band,
    tolerant_console,
)
from gender.images import BadImageError, parse_image_size, read_image
from gender.output import (
    emit,
    face_lines,
    faces_csv,
    images_csv,
    model_phrase,
    verdict,
    whole_image_result,
    write_pictures,
)
from gender.predictor import Predictor
from gender.runs import is_run_folder
from gender.task_fit import warn_mismatch

NO_FACE = 3  # exit status when an image holds no face: distinct from errors


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE",
        help="image files or folders; a last argument ending in .keras or .h5 "
        "(or .tflite), or a run folder, is taken as WEIGHTS: 'IMAGE WEIGHTS' works as well as "
        "--weights",
    )
    parser.add_argument(
        "--weights", help="a .keras model or run folder (default: the bundled --task model)"
    )
    add_model_flags(parser)
    parser.add_argument(
        "--csv",
        metavar="PATH",
        help="write the CSV here instead of stdout (with --ray: CSV, or Parquet for .parquet)",
    )
    parser.add_argument(
        "--threshold",
        type=probability,
        help="answer woman when P(woman) is at least this (default: the model's own, stored "
        f"with it when bundled; else {THRESHOLD:g})",
    )
    parser.add_argument(
        "--no-detect",
        action="store_true",
        help="classify each whole image as it is (for crops; pedestrian models never detect)",
    )
    add_min_face_flag(parser)
    parser.add_argument(
        "--detect-faces",
        action="store_true",
        help="detect faces in folders too (by default only image files are searched for faces)",
    )
    add_uncertain_flag(parser)
    add_ray_flag(parser)
    parser.add_argument("--annotate", metavar="OUT.jpg", help="one image: draw boxes and labels")
    parser.add_argument(
        "--explain",
        metavar="OUT.png",
        help="one image: Grad-CAM heatmap of the predicted class (runs the Keras model, "
        "whatever --backend)",
    )
    add_common_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    tolerant_console()
    args = build_parser().parse_args(argv)
    apply_common_flags(args)
    return run_cli(lambda: predict(args))


def predict(args: argparse.Namespace) -> int:
    inputs, weights = list(args.inputs), args.weights
    last = inputs[-1]
    if (
        len(inputs) > 1
        and not weights
        and (last.endswith((".keras", ".h5", ".tflite")) or is_run_folder(last))
    ):
        weights = inputs.pop()  # IMAGE WEIGHTS order; a run folder is a model too
    for item in inputs:  # a model folder is never searched for images
        if is_run_folder(item):
            where = (
                f"--weights {weights} is the model already"
                if weights
                else "give it after the images (IMAGE... RUN_DIR) or as --weights"
            )
            raise UserError(f"{item}: a run folder (a model), not images; {where}")
    if args.ray is not None:  # a folder, table or storage URI, on a Ray cluster
        from gender.ray_jobs import predict_collection

        return predict_collection(inputs, weights, args)
    paths = expand_inputs(inputs)
    outputs = [(output, False) for output in (args.csv, args.annotate, args.explain)]
    check_outputs(outputs, [*inputs, *paths, *([weights] if weights else [])])
    if args.csv:  # a row per image: its path and ~40 characters of answer (twice: a temporary)
        check_space(Path(args.csv).parent, 2 * sum(len(path) + 40 for path in paths))
    # Grad-CAM needs the gradients of the Keras model; the TFLite export has none.
    predictor = Predictor.load(
        weights,
        task=args.task,
        backend="keras" if args.explain else args.backend,
        image_size=parse_image_size(args.image_size) if args.image_size else None,
        min_face=args.min_face,
    )
    if args.threshold is not None:
        predictor.set_threshold(args.threshold)

    band = resolve_band(args.uncertain, predictor.info.uncertain_band, predictor.threshold)
    single = len(inputs) == 1 and Path(inputs[0]).is_file()
    if (args.annotate or args.explain) and not single:
        raise UserError("--annotate and --explain need exactly one image file")
    if not single or args.csv:  # CSV rows do not repeat it: one line on stderr says it
        print(f"predicting with {predictor.describe()}", file=sys.stderr)
    if predictor.wants_detection(inputs, args.detect_faces, args.no_detect):
        return predict_faces(predictor, paths, args, single, band)
    if not args.no_task_check:
        warn_mismatch(predictor.task, predictor.size, paths)
    return predict_whole(predictor, paths, args, single, band)


def predict_whole(predictor, paths: list[str], args, single: bool, band=None) -> int:
    """Each image classified as it is: one line for one image, else CSV rows."""
    samples = Samples(paths, np.zeros(len(paths), np.int64))  # labels unknown here
    # One bad image alone is an error naming it; among many it is reported and skipped.
    result = predictor.folder(samples, args.batch_size, skip_bad=len(paths) > 1)
    if single and not args.csv:
        answer = verdict(result.p_woman[0], result.threshold, model_phrase(predictor), band)
        print(f"{result.samples.paths[0]}: {answer}")
    if args.annotate or args.explain:
        rgb = read_image(paths[0])
        faces = [whole_image_result(rgb, result.p_woman[0], result.threshold)]
        write_pictures(predictor, rgb, faces, False, args.annotate, args.explain)
    if single and not args.csv:
        return 0
    emit(images_csv(result, band), args.csv)
    if args.csv:
        unsure = ""
        if band:
            low, high = band
            count = int(((result.p_woman > low) & (result.p_woman < high)).sum())
            unsure = f" ({count} uncertain)"
        print(f"{len(result.samples)} predictions written to {args.csv}{unsure}")
    return 0 if not result.skipped else 1


def predict_faces(predictor, paths: list[str], args, single: bool, band=None) -> int:
    """One line (or CSV row) per face; an image without a face says so, with status NO_FACE.

    Returns:
        The exit status: 0, 1 if some images were unreadable, else NO_FACE if one had no face.
    """
    photos, unreadable = [], 0
    for path in paths:
        try:
            photo = predictor.photo(path, args.batch_size)
            if not single:
                photo.rgb = None  # only --annotate/--explain of one photo draw on it
            photos.append(photo)
        except BadImageError as err:
            if single:
                raise
            warn(f"{err} (skipped)")
            unreadable += 1
    faceless = sum(not photo.faces for photo in photos)
    first = photos[0] if single else None
    if single and not args.csv:
        if not first.faces:
            print(f"{paths[0]}: no face found (--no-detect classifies the whole image)")
            return NO_FACE
        print("\n".join(face_lines(first, model_phrase(predictor), band)))
    if single and first.faces:
        write_pictures(predictor, first.rgb, first.faces, True, args.annotate, args.explain)
    if single and not args.csv:
        return 0
    emit(faces_csv(photos, band), args.csv)
    if args.csv:
        found = sum(len(photo.faces) for photo in photos)
        print(f"{found} faces in {len(photos)} images -> {args.csv}")
    if faceless:
        print(f"{faceless} image(s) with no face found", file=sys.stderr)
    return 1 if unreadable else NO_FACE if faceless else 0


if __name__ == "__main__":
    sys.exit(main())
