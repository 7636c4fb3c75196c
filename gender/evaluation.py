"""Evaluation as a library call: a model's figures on a labelled set, as one typed result.

    from gender.data import load_samples
    from gender.evaluation import evaluate
    from gender.predictor import Predictor

    result = evaluate(Predictor.load(), load_samples("faces/val")["all"], band=(0.3, 0.7))
    print(result.accuracy, result.map, result.report["intervals"]["map"])

`evaluate` classifies the images and returns an `Evaluation`; its `report` is the dict that
gender_mAP.py prints (`gender.output.print_evaluation`), writes with --json and shows on its
--report page (`gender.report`), and that the end of training shows on the run's report.html:
built here and nowhere else. `gender.metrics` computes the numbers in it; the words and the
pictures are the output layer's. Nothing here writes a file, and the only line printed is the
end of training's note when the validation images cannot be read.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender import UserError
from gender.data import Samples, person_ids, read_truth_table
from gender.groups import group_names
from gender.metrics import (
    bootstrap_intervals,
    coverage_table,
    face_report,
    group_report,
    person_report,
    threshold_advice,
    threshold_sweep,
    uncertain_report,
)
from gender.metrics import evaluate as score
from gender.predictor import FolderResult, Predictor

if TYPE_CHECKING:
    from gender.config import RunRecord
    from gender.faces import CropSummary

Band = tuple[float, float] | None  # --uncertain LOW:HIGH: no answer strictly inside it


def figures(
    labels: "np.ndarray | Sequence[int]",
    p_woman: "np.ndarray | Sequence[float]",
    threshold: float,
    persons: Sequence[str] | None = None,
    band: Band = None,
) -> dict:
    """Every figure of one evaluation that depends on the answers alone: `gender.metrics.evaluate`'s
    dict with the 95% intervals (over `persons` when given), the coverage rows, the threshold
    advice and sweep, and with `band` the figures on the answered images."""
    report = score(labels, p_woman, threshold)
    report["intervals"] = bootstrap_intervals(labels, p_woman, threshold, persons)
    report["coverage"] = coverage_table(labels, p_woman, threshold)
    report["threshold_advice"] = threshold_advice(labels, p_woman, threshold)
    report["threshold_sweep"] = threshold_sweep(labels, p_woman)
    if band is not None:
        report["uncertain"] = uncertain_report(labels, p_woman, threshold, band)
    return report


@dataclass
class Evaluation:
    """One model's answers on one labelled set, and every figure made of them (`report`).

    The figures are computed when first read (the 95% intervals take a second on a large set):
    a caller that only needs the answers (`bundle --threshold val`) never pays for them.
    """

    samples: Samples  # the images evaluated, in order (the unreadable ones left out)
    p_woman: np.ndarray  # (N,) the model's P(woman) for each
    threshold: float  # the decision threshold the answers were given at
    dataset: str  # the evaluated set as the user named it
    weights: str  # the model as the user named it
    model: dict  # the report's words on the model: name, input size, backend, threshold
    setting: dict  # what the page's header says beyond the figures (task, date, ...)
    band: Band = None
    skipped: int = 0  # unreadable images, left out
    person_source: str | None = None  # the person-id regex the by-person figures use
    group_source: str | None = None  # the --groups source the per-group figures use
    has_face: np.ndarray | None = None  # (N,) bool with face detection, else None
    crops: "CropSummary | None" = None  # detection counts with face detection, else None

    @cached_property
    def persons(self) -> list[str] | None:
        """Each image's person id (with `person_source`), else None."""
        return person_ids(self.samples.paths, self.person_source) if self.person_source else None

    @cached_property
    def groups(self) -> list[str] | None:
        """Each image's group (with `group_source`), else None."""
        return group_names(self.samples.paths, self.group_source) if self.group_source else None

    @cached_property
    def report(self) -> dict:
        """Every figure, JSON-ready: the dict --json writes and the page embeds."""
        labels, p_woman, threshold = self.samples.labels, self.p_woman, self.threshold
        report = figures(labels, p_woman, threshold, self.persons, self.band)
        report.update(
            dataset=self.dataset,
            weights=self.weights,
            **self.model,
            skipped_unreadable=self.skipped,
            setting=self.setting,
        )
        if self.crops is not None:
            report["faces"] = face_report(self.samples, p_woman, self.has_face, self.crops,
                                          threshold)  # fmt: skip
        if self.groups is not None:
            report["by_group"] = group_report(labels, p_woman, self.groups, threshold)
            report["by_group"]["source"] = self.group_source
        if self.persons is not None:
            report["by_person"] = person_report(labels, p_woman, self.persons, threshold)
            report["by_person"]["source"] = self.person_source
        return report

    @property
    def accuracy(self) -> float:
        """The share of the images answered right (at `threshold`, every image answered)."""
        return self.report["accuracy"]

    @property
    def balanced_accuracy(self) -> float:
        """The mean of the two classes' accuracies."""
        return self.report["balanced_accuracy"]

    @property
    def map(self) -> float:
        """The mean of the two classes' average precision."""
        return self.report["map"]

    @property
    def error_rate(self) -> dict[str, float]:
        """Each class's share of images given the other answer."""
        return self.report["error_rate"]


def evaluate(
    predictor: Predictor,
    samples: Samples,
    *,
    persons: str | None = None,
    groups: str | None = None,
    band: Band = None,
    detect: bool = False,
    batch_size: int = 64,
    dataset: str = "",
    weights: str | Path | None = None,
    setting: dict | None = None,
) -> Evaluation:
    """Classify `samples` with `predictor` (at its threshold) and return the evaluation.

    Args:
        persons: a person-id regex on the file names: the intervals resample persons and the
            report adds the figures with every person weighing the same.
        groups: a --groups source (a preset, a regex or a CSV): the report adds each group's
            figures.
        band: (LOW, HIGH): the figures when the model may answer `uncertain` inside it.
        detect: classify each image's largest detected face (none found: the whole image).
        dataset, weights: how the report names the set and the model (default: the model's
            file).
        setting: the page header's entries after task, model, threshold and date (default:
            the detection and the band).
    """
    result = predictor.folder(samples, batch_size, detect=detect)
    if setting is None:
        setting = {"detect_faces": bool(detect), "uncertain": list(band) if band else None}
    return evaluate_predictions(
        predictor, result, persons=persons, groups=groups, band=band, dataset=dataset,
        weights=weights, setting=setting,
    )  # fmt: skip


def evaluate_predictions(
    predictor: Predictor,
    result: FolderResult,
    *,
    persons: str | None = None,
    groups: str | None = None,
    band: Band = None,
    dataset: str = "",
    weights: str | Path | None = None,
    setting: dict | None = None,
) -> Evaluation:
    """`evaluate` of answers already computed (`predictor.folder`, or on a Ray cluster)."""
    source = predictor.threshold_source
    if source == "stored with the model" and predictor.info.threshold_source is not None:
        source += f": {predictor.info.threshold_source}"  # how the bundle chose it
    header = {
        "task": predictor.task,
        "model_name": predictor.model_name,
        "threshold_source": source,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **(setting or {}),
    }
    model = {
        "model": predictor.info.model,
        "image_size": list(predictor.size),
        "backend": predictor.backend_name,
        "threshold_source": predictor.threshold_source,
        "about": predictor.describe(),
    }
    return Evaluation(
        samples=result.samples,
        p_woman=result.p_woman,
        threshold=result.threshold,
        dataset=str(dataset),
        weights=str(weights or predictor.weights),
        model=model,
        setting=header,
        band=band,
        skipped=result.skipped,
        person_source=persons,
        group_source=groups,
        has_face=result.has_face,
        crops=result.crops,
    )


def evaluate_run(
    run_dir: Path, val_set: Samples | None, val_x: np.ndarray | None, info: "RunRecord"
) -> Evaluation | None:
    """best.keras of a run on its validation split, at the end of training (None: no split,
    no best.keras, or validation images that cannot be read).

    Args:
        val_set: the validation Samples; val_x: their decoded images when the trainer holds
            them (else the files of the run's val.txt are read again).
        info: the run's record (its flags give the person-id regex, if any).
    """
    if not val_set or not (run_dir / "best.keras").exists():
        return None
    predictor = Predictor.load(run_dir / "best.keras", backend="keras")
    if val_x is not None:
        p_woman = np.concatenate(
            [predictor.classify(np.asarray(val_x[k : k + 512])) for k in range(0, len(val_x), 512)]
        )
        result = FolderResult(val_set, p_woman, 0, threshold=predictor.threshold)
    else:  # streamed from packed shards: the images of the val.txt copied beside them, if any
        if not (run_dir / "val.txt").is_file():
            return None
        try:
            result = predictor.folder(read_truth_table(run_dir / "val.txt"), progress=False)
        except UserError as err:
            print(f"no report.html: the validation images cannot be read ({err})")
            return None
    return evaluate_predictions(
        predictor,
        result,
        persons=info.flags.get("by_person"),
        dataset=str(run_dir / "val.txt"),
        weights=run_dir / "best.keras",
        setting={"epoch": info.best_epoch},
    )
