"""Evaluate a model on a man/woman folder and print accuracy, AP per class, mAP and confusion rates.

python gender_mAP.py val weights/cnn7-20261122-101500/best.keras
python gender_mAP.py weights/<run>/val.txt weights/<run>/best.keras --json report.json
python gender_mAP.py DIR --task pedestrian --plots plots/ --errors errors.csv
python gender_mAP.py portraits/ --detect-faces     # on each image's largest aligned face
python gender_mAP.py data/faces_bfw/val --groups bfw-ethnicity   # error rates per group
python gender_mAP.py data/ped_test --task pedestrian --by-person '^([^_]+__[^_.]+)'  # per person
python gender_mAP.py val --report report.html --uncertain 0.3:0.7   # one page to look at
"""

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gender import THRESHOLD, UserError, interrupt
from gender.atomic import check_outputs, check_space, file_set
from gender.console import command, run_cli
from gender.data import class_folders, load_samples
from gender.evaluation import evaluate, evaluate_predictions
from gender.flags import (
    Parser,
    add_common_flags,
    add_min_face_flag,
    add_model_flags,
    add_person_flag,
    add_ray_flag,
    add_uncertain_flag,
    apply_common_flags,
    probability,
    resolve_band,
    tolerant_console,
)
from gender.groups import PRESETS as GROUP_PRESETS
from gender.groups import group_names
from gender.images import parse_image_size
from gender.output import errors_csv, print_evaluation
from gender.predictor import Predictor, default_weights
from gender.report import explain_mistakes, gallery_indices, save_plots, write_page
from gender.runs import is_run_folder
from gender.tables import json_text
from gender.task_fit import warn_mismatch

if TYPE_CHECKING:
    from gender.data import Samples
    from gender.evaluation import Evaluation


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data",
        metavar="DATASET",
        help="folder with man/ and woman/ (a train/val folder: its val/), or a "
        f"ground-truth table .txt from {command('dataset')}",
    )
    parser.add_argument(
        "weights",
        metavar="WEIGHTS",
        nargs="?",
        help="a .keras model or run folder (default: the bundled --task model)",
    )
    parser.add_argument("--weights", dest="weights_flag", metavar="WEIGHTS", help=argparse.SUPPRESS)
    add_model_flags(parser)
    parser.add_argument(
        "--threshold",
        type=probability,
        help="P(woman) at or above which an image counts as woman, in (0, 1) (default: the "
        f"model's own, chosen on its validation split when bundled with --threshold val; else "
        f"{THRESHOLD:g})",
    )
    parser.add_argument("--json", metavar="PATH", help="write the numbers as JSON")
    parser.add_argument(
        "--plots",
        metavar="DIR",
        help="save the confusion matrix, PR and ROC curves and, with --groups, groups.png (PNG)",
    )
    parser.add_argument(
        "--errors", metavar="PATH", help="CSV of the misclassified images, most wrong first"
    )
    parser.add_argument(
        "--report",
        metavar="PAGE.html",
        help="one self-contained HTML page: figures with confidence intervals, plots, the "
        "threshold, galleries of the mistakes (open it in any browser)",
    )
    parser.add_argument(
        "--explain-errors",
        type=int,
        default=0,
        metavar="N",
        help="with --report: Grad-CAM of the N most confident mistakes (runs the Keras model)",
    )
    add_uncertain_flag(parser)
    add_min_face_flag(parser)
    parser.add_argument(
        "--detect-faces",
        action="store_true",
        help="classify each image's largest detected face, aligned and cropped; images "
        "without a face are classified whole and reported separately",
    )
    parser.add_argument(
        "--groups",
        metavar="SOURCE",
        help="also report accuracy and each class's error per group: a preset "
        f"({', '.join(GROUP_PRESETS)}), a regex on the file name whose group 1 is the group, "
        "or a CSV of path,group rows",
    )
    add_ray_flag(parser)
    add_person_flag(
        parser,
        "--by-person",
        "also report the rates with every person weighing the same (sets cut from video hold "
        "some people in dozens of frames)",
    )
    add_common_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    tolerant_console()
    args = build_parser().parse_args(argv)
    apply_common_flags(args)

    def work() -> int:
        evaluate_folder(args)  # the evaluation it returns is for library callers
        return 0

    return run_cli(work)


def evaluate_folder(args: argparse.Namespace) -> "Evaluation":
    """gender_mAP.py's work: check the flags and outputs, load the model, evaluate, print the
    report and write the --json, --errors, --plots and --report files."""
    samples, title = read_set(args)
    given = args.weights or args.weights_flag
    weights = given or default_weights(args.task or "face")
    check_output_paths(args, samples, weights)
    interrupt.keep(
        "no output of this run was written; earlier --json/--errors/--plots/--report stay whole"
    )
    predictor = Predictor.load(
        weights,
        task=args.task,
        backend=args.backend,
        image_size=parse_image_size(args.image_size) if args.image_size else None,
        min_face=args.min_face,
    )
    if args.threshold is not None:
        predictor.set_threshold(args.threshold)  # before predicting: int8 re-checks around it
    band = resolve_band(args.uncertain, predictor.info.uncertain_band, predictor.threshold)
    evaluation = run_evaluation(args, predictor, samples, band, given)
    print_evaluation(evaluation, title)
    write_outputs(args, evaluation, title)
    return evaluation


def read_set(args: argparse.Namespace) -> "tuple[Samples, str]":
    """(the images to evaluate, the set's name in the report), after the checks that need no
    model: the two positional arguments in their order, both classes present, --groups valid."""
    if args.explain_errors and not args.report:
        raise UserError("--explain-errors draws on the --report page: give --report PAGE.html")
    if is_run_folder(args.data):
        raise UserError(
            f"{args.data}: a run folder (a model), not a data set; give DATASET first, then the "
            f"model ({command('map')} DATASET RUN_DIR)"
        )
    if args.weights and args.weights_flag and args.weights != args.weights_flag:
        raise UserError(
            f"two models given: {args.weights} and --weights {args.weights_flag}; give one"
        )
    if args.ray is not None:  # a storage URI too
        from gender.ray_jobs import load_samples as load_any

        splits = load_any(args.data)
    else:
        splits = load_samples(args.data)
    samples = splits.get("val", splits.get("all"))
    title = f"{args.data}/val" if "val" in splits else str(args.data)
    if args.groups:  # read once, before the model: a bad regex or CSV fails early
        group_names(samples.paths, args.groups)
    for name, count in samples.counts().items():
        if count == 0:
            raise UserError(f"{args.data}: no {name} images; evaluation needs both classes")
    return samples, title


def check_output_paths(args: argparse.Namespace, samples: "Samples", weights: str | Path) -> None:
    """Before the work: no output lands on (or inside) what is read, and each has room."""
    local = "://" not in args.data  # a storage URI (--ray) is only read
    inputs = [*class_folders(args.data), *samples.paths, weights] if local else []
    inputs += [args.data] if Path(args.data).is_file() else []
    outputs = [(args.json, False), (args.errors, False), (args.plots, True), (args.report, False)]
    check_outputs(outputs, inputs)
    # rough sizes: a report, a row per image at most, the pictures, a page (capped galleries)
    sizes = [(args.json, 2**16), (args.errors, 80 * len(samples)), (args.plots, 2**19),
             (args.report, 2**21)]  # fmt: skip
    for path, size in sizes:
        if path:
            check_space(Path(path).parent, size)


def run_evaluation(args, predictor, samples, band, given) -> "Evaluation":
    """The evaluation of `samples`, classified here or (--ray) on a Ray cluster."""
    if not args.detect_faces and not args.no_task_check:
        warn_mismatch(predictor.task, predictor.size, samples.paths)
    named = dict(persons=args.by_person, groups=args.groups, band=band, dataset=args.data,
                 weights=given)  # fmt: skip
    if args.ray is None:
        return evaluate(
            predictor, samples, detect=args.detect_faces, batch_size=args.batch_size, **named
        )
    from gender.ray_jobs import classify_folder

    setting = {"detect_faces": bool(args.detect_faces), "uncertain": list(band) if band else None}
    result = classify_folder(predictor, samples, args)
    return evaluate_predictions(predictor, result, setting=setting, **named)


def write_outputs(args: argparse.Namespace, evaluation: "Evaluation", title: str) -> None:
    """--json, --errors, --plots and --report, committed together (never one run's JSON beside
    another's CSV), then where each went."""
    report, kept, p_woman = evaluation.report, evaluation.samples, evaluation.p_woman
    with file_set() as files:
        if args.json:
            files.add(args.json).write_text(json_text(report), encoding="utf-8")
        if args.errors:
            text = errors_csv(kept, p_woman, evaluation.threshold, evaluation.band)
            files.add(args.errors).write_text(text, encoding="utf-8", errors="surrogateescape")
        if args.plots:
            plot_title = f"{report['model']} ({Path(evaluation.weights).name}) on {title}"
            folder = files.add(args.plots, folder=True)
            save_plots(folder, report, kept.labels, p_woman, plot_title)
            if not args.groups:  # an earlier evaluation's, which this set would sit beside
                files.drop(Path(args.plots) / "groups.png")
        if args.report:
            page = write_report(files.add(args.report), evaluation, args)
    if args.json:
        print(f"numbers written to {args.json}")
    if args.errors:
        print(f"misclassified images listed in {args.errors} (most wrong first)")
    if args.plots:
        groups = " and groups.png" if args.groups else ""
        print(f"confusion_matrix.png, pr_curves.png{groups} written to {args.plots}")
    if args.report:
        print(f"report page written to {args.report} ({page})")


def write_report(path: Path, evaluation: "Evaluation", args: argparse.Namespace) -> str:
    """The HTML page, with Grad-CAM of the first --explain-errors mistakes; returns its size
    and the seconds it took, in words."""
    started = time.perf_counter()
    report, kept, p_woman = evaluation.report, evaluation.samples, evaluation.p_woman
    explained, note = [], ""
    if args.explain_errors > 0:
        wrong, _ = gallery_indices(kept.labels, p_woman, report["threshold"], evaluation.band)
        mistakes = [kept.paths[i] for i in wrong]
        explained = explain_mistakes(
            evaluation.weights, mistakes, args.detect_faces, args.explain_errors
        )
        note = (
            "The overlays come from the .keras model (Grad-CAM needs its gradients); the other "
            f"P(woman) figures on this page come from the {report['backend']} backend, so each "
            "caption gives both."
        )
    size = write_page(
        path, report, kept.labels, p_woman, kept.paths, explained, evaluation.band, note
    )
    return f"{size / 2**20:.1f} MB in {time.perf_counter() - started:.1f} s"


if __name__ == "__main__":
    sys.exit(main())
