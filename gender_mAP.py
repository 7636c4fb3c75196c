"""Evaluate a model on a man/woman folder and print accuracy, AP per class, mAP and confusion rates.

python gender_mAP.py val weights/cnn7-20261122-101500/best.keras
python gender_mAP.py weights/<run>/val.txt weights/<run>/best.keras --json report.json
python gender_mAP.py DIR --task pedestrian --plots plots/ --errors errors.csv
python gender_mAP.py portraits/ --detect-faces     # on each image's largest aligned face
"""

import argparse
import json
import sys
from pathlib import Path

from gender import TASKS, UserError
from gender.predictor import BACKENDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data",
        metavar="DATASET",
        help="folder with man/ and woman/ (a train/val folder: its val/), or a "
        "ground-truth table .txt from dataset.py",
    )
    parser.add_argument(
        "weights",
        metavar="WEIGHTS",
        nargs="?",
        help="a .keras model or run folder (default: the bundled --task model)",
    )
    parser.add_argument("--weights", dest="weights_flag", metavar="WEIGHTS", help=argparse.SUPPRESS)
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="face",
        help="bundled model to use when no WEIGHTS are given (default face)",
    )
    parser.add_argument("--image-size", help="must match the model's; read from run.json")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: the .tflite export beside the weights with LiteRT when there is one "
        "(faster), else Keras; keras forces the .keras model (default auto)",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="P(woman) cut-off")
    parser.add_argument("--json", metavar="PATH", help="write the numbers as JSON")
    parser.add_argument("--plots", metavar="DIR", help="save confusion matrix and PR curves (PNG)")
    parser.add_argument("--errors", metavar="PATH", help="CSV of the misclassified images")
    parser.add_argument(
        "--detect-faces",
        action="store_true",
        help="classify each image's largest detected face, aligned and cropped; images "
        "without a face are classified whole and reported separately",
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        evaluate_folder(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def evaluate_folder(args) -> dict:
    from gender.atomic import write_text
    from gender.data import load_samples
    from gender.images import parse_image_size
    from gender.metrics import errors_csv, evaluate, face_report, format_report, save_plots
    from gender.predictor import Predictor

    splits = load_samples(args.data)
    samples = splits.get("val", splits.get("all"))
    title = f"{args.data}/val" if "val" in splits else str(args.data)
    for name, count in samples.counts().items():
        if count == 0:
            raise UserError(f"{args.data}: no {name} images; evaluation needs both classes")
    given = args.weights or args.weights_flag
    predictor = Predictor.load(
        given,
        task=args.task,
        backend=args.backend,
        image_size=parse_image_size(args.image_size) if args.image_size else None,
    )
    result = predictor.folder(samples, args.batch_size, detect=args.detect_faces)
    kept, p_woman, skipped, crops = result.samples, result.p_woman, result.skipped, result.crops
    weights, info, size = given or predictor.weights, predictor.info, predictor.size

    report = evaluate(kept.labels, p_woman, args.threshold)
    report.update(
        dataset=str(args.data),
        weights=str(weights),
        model=info["model"],
        image_size=list(size),
        backend=predictor.backend,
        skipped_unreadable=skipped,
    )
    if args.detect_faces:
        report["faces"] = face_report(kept, p_woman, result.has_face, crops, args.threshold)
    print(format_report(report, title))
    if args.detect_faces:
        faces = report["faces"]
        print(crops.line())
        print(
            f"accuracy(%) over all {len(kept)} images (no face: whole image) "
            f"{100 * report['accuracy']:.2f}; over the {faces['found']} with a face "
            f"{100 * faces['accuracy_with_face']:.2f}; counting no face as wrong "
            f"{100 * faces['accuracy_no_face_wrong']:.2f}"
        )
    if skipped:
        print(f"{skipped} unreadable image(s) skipped (listed above)")
    if args.json:
        write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.errors:
        write_text(args.errors, errors_csv(kept, p_woman, args.threshold))
    if args.plots:
        save_plots(Path(args.plots), report, kept.labels, p_woman)
    return report


if __name__ == "__main__":
    sys.exit(main())
