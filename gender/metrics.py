"""The one definition of every number the toolkit reports.

AP is scikit-learn's `average_precision_score`, computed here with numpy (the same numbers, a
test compares; importing scikit-learn cost half a second of every evaluation): the step-wise
(non-interpolated) area under the precision-recall curve. It is not Keras' `AUC(curve="PR")`,
which interpolates. AP(woman) ranks images by p = P(woman); AP(man) by 1 - p; mAP is the mean
of the two. The report's other outputs (face counts, the errors CSV, the plots) are written here
too, from the same numbers.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gender import CLASS_NAMES, UserError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from gender.data import Samples

THRESHOLD = 0.5


class FaceCounts(Protocol):
    """What face_report reads of a detection summary (`gender.faces.CropSummary`)."""

    found: int
    none: int
    several: int


def average_precision(is_positive: "ArrayLike", scores: "ArrayLike") -> float:
    """AP of one class: `is_positive` (N,) bool, `scores` (N,) higher = more likely positive."""
    is_positive = np.asarray(is_positive, bool)
    if not is_positive.any():
        return float("nan")  # undefined without a single positive
    scores = np.asarray(scores, float)
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], is_positive[order]
    # one precision-recall point per distinct score (tied images enter together), as sklearn
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    true_positives = np.cumsum(hits)[ends]
    precision = true_positives / (ends + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def mean_ap(labels: "ArrayLike", p_woman: "ArrayLike") -> tuple[dict[str, float], float]:
    """Per-class AP and their mean; labels (N,) 0/1, p_woman (N,) in [0, 1]."""
    labels, p_woman = np.asarray(labels), np.asarray(p_woman, float)
    ap = {
        CLASS_NAMES[0]: average_precision(labels == 0, 1.0 - p_woman),
        CLASS_NAMES[1]: average_precision(labels == 1, p_woman),
    }
    return ap, float(np.mean(list(ap.values())))


def evaluate(labels: "ArrayLike", p_woman: "ArrayLike", threshold: float = THRESHOLD) -> dict:
    """Every reported number for one evaluation, as a JSON-ready dict.

    `confusion_rates["woman==>man"]` is the fraction of true women predicted man (each true class's
    rates sum to 1); `confusion_matrix[i][j]` counts true class i predicted as class j.
    """
    labels = np.asarray(labels, int)
    p_woman = np.asarray(p_woman, float)
    predicted = (p_woman >= threshold).astype(int)
    n = len(labels)
    matrix = np.zeros((2, 2), int)
    np.add.at(matrix, (labels, predicted), 1)
    ap, map_ = mean_ap(labels, p_woman)
    rates, precision, recall, f1, error_rate = {}, {}, {}, {}, {}
    for i, true_name in enumerate(CLASS_NAMES):
        support = matrix[i].sum()
        for j, predicted_name in enumerate(CLASS_NAMES):
            rates[f"{true_name}==>{predicted_name}"] = _ratio(matrix[i, j], support)
        precision[true_name] = _ratio(matrix[i, i], matrix[:, i].sum())
        recall[true_name] = _ratio(matrix[i, i], support)
        error_rate[true_name] = _ratio(support - matrix[i, i], support)
        p, r = precision[true_name], recall[true_name]
        f1[true_name] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    correct = int(np.trace(matrix))
    return {
        "n": n,
        "correct": correct,
        "accuracy": _ratio(correct, n),
        "balanced_accuracy": float(np.nanmean(list(recall.values()))),
        "ap": ap,
        "map": map_,
        "confusion_rates": rates,
        "error_rate": error_rate,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": {name: int(matrix[i].sum()) for i, name in enumerate(CLASS_NAMES)},
        "confusion_matrix": matrix.tolist(),
        "class_names": list(CLASS_NAMES),
        "threshold": threshold,
    }


def _ratio(numerator, denominator) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.2f}"


def format_report(report: dict, title: str) -> str:
    """The seeds' text report (seed 001's mAP report plus the pedestrian seed's confusion rates)."""
    names = report["class_names"]
    lines = [
        "mAP report",
        f"Evaluation dataset: {title}",
        *([f"Model: {report['about']}"] if "about" in report else []),
        f"{report['correct']} images correctly predicted among {report['n']} evaluation images",
        f"accuracy(%): {_pct(report['accuracy'])}   balanced accuracy(%): "
        f"{_pct(report['balanced_accuracy'])}",
    ]
    lines += [f"AP {name}(%): {_pct(report['ap'][name])}" for name in names]
    lines += [f"mAP(%): {_pct(report['map'])}", ""]
    for key, rate in report["confusion_rates"].items():
        lines.append(f"{key:<16} {rate:.3f}" if rate == rate else f"{key:<16} n/a")
    lines += ["", f"{'class':<8}{'support':>9}{'error%':>9}{'precision':>11}{'recall':>9}{'F1':>8}"]
    for name in names:
        lines.append(
            f"{name:<8}{report['support'][name]:>9}{_pct(report['error_rate'][name]):>9}"
            f"{_pct(report['precision'][name]):>11}{_pct(report['recall'][name]):>9}"
            f"{_pct(report['f1'][name]):>8}"
        )
    matrix = report["confusion_matrix"]
    lines += [
        "",
        "confusion matrix (rows: true, columns: predicted)",
        f"{'':<8}" + "".join(f"{name:>8}" for name in names),
    ]
    lines += [f"{name:<8}" + "".join(f"{v:>8}" for v in row) for name, row in zip(names, matrix)]
    return "\n".join(lines)


def equal_error_threshold(
    labels: "ArrayLike", p_woman: "ArrayLike", weights: "ArrayLike | None" = None
) -> float:
    """The P(woman) threshold at which men's and women's error rates are closest to equal.

    A model trained on one class mix leans to the class it saw more of; on a new camera the two
    error rates drift apart at 0.5. Chosen on a validation split, this threshold spreads the errors
    evenly instead. Ties go to the candidate with the higher balanced accuracy, then to the one
    nearest 0.5; candidates are midpoints between consecutive distinct scores. With `weights`
    (one per image, e.g. 1 / the person's image count: `person_weights`) the error rates are
    weighted ones.
    """
    labels, p_woman = np.asarray(labels, int), np.asarray(p_woman, float)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, float)
    sides = []
    for label in (0, 1):
        order = np.argsort(p_woman[labels == label], kind="mergesort")
        scores, mass = p_woman[labels == label][order], weights[labels == label][order]
        if not len(scores):
            raise UserError("a decision threshold needs validation images of both classes")
        sides.append((scores, np.r_[0.0, np.cumsum(mass)]))  # cumulative[k]: weight below k
    (men, men_below), (women, women_below) = sides
    scores = np.unique(p_woman)
    candidates = np.concatenate([[0.5], (scores[1:] + scores[:-1]) / 2])
    # errors at every candidate at once: men at or above it, women below it
    man_error = 1.0 - men_below[np.searchsorted(men, candidates, "left")] / men_below[-1]
    woman_error = women_below[np.searchsorted(women, candidates, "left")] / women_below[-1]
    order = np.lexsort(
        (np.abs(candidates - 0.5), man_error + woman_error, np.abs(man_error - woman_error))
    )
    return float(candidates[order[0]])


def group_report(
    labels: "ArrayLike", p_woman: "ArrayLike", groups: Sequence[str], threshold: float = THRESHOLD
) -> dict:
    """Accuracy and each class's error rate per group, and the worst group.

    The worst is the group and class with the highest error rate (the gap users meet, e.g. "women
    of one ethnicity called men"); images in no group are reported but never named worst.
    """
    from gender.groups import NO_GROUP

    labels, p_woman, groups = (
        np.asarray(labels, int),
        np.asarray(p_woman, float),
        np.asarray(groups),
    )
    per_group = {}
    for name in sorted(set(groups.tolist())):
        part = evaluate(labels[groups == name], p_woman[groups == name], threshold)
        per_group[name] = {
            key: part[key]
            for key in ("n", "correct", "accuracy", "balanced_accuracy", "support", "error_rate")
        }
    candidates = [
        (rate, group, class_name)
        for group, part in per_group.items()
        if group != NO_GROUP
        for class_name, rate in part["error_rate"].items()
        if rate == rate  # a class the group has no image of has no error rate (nan)
    ]
    worst = None
    if candidates:
        rate, group, class_name = max(candidates)
        worst = {"group": group, "class": class_name, "error_rate": rate}
    return {"groups": per_group, "worst": worst}


def _person_index(persons: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(each image's person number, each image's weight 1 / its person's image count)."""
    _, index, images_of = np.unique(np.asarray(persons, dtype=object), return_inverse=True,
                                    return_counts=True)  # fmt: skip
    return index, 1.0 / images_of[index]


def person_weights(persons: Sequence[str]) -> np.ndarray:
    """1 / (the image count of each image's person): every person's images weigh 1 in all."""
    return _person_index(persons)[1]


def person_report(
    labels: "ArrayLike", p_woman: "ArrayLike", persons: Sequence[str], threshold: float = THRESHOLD
) -> dict:
    """The same accuracy and error rates with every person weighing the same.

    Sets cut from video hold one person in dozens of frames: per image, a few people decide the
    figure (one man in a white jacket was 42 of 1,929 test images, 4 points of men's error). Here
    each image weighs 1 / (its person's image count), so each rate is the mean over persons of
    that person's share of wrong images. `wrong_persons` counts the persons wrong on more than
    half of their images.
    """
    labels, p_woman = np.asarray(labels, int), np.asarray(p_woman, float)
    person_index, weight = _person_index(persons)
    wrong = ((p_woman >= threshold).astype(int) != labels).astype(float)
    count, error_rate, wrong_persons = {}, {}, {}
    for i, name in enumerate(CLASS_NAMES):
        mine = labels == i
        count[name] = len(np.unique(person_index[mine]))
        error_rate[name] = _ratio(np.sum(weight[mine] * wrong[mine]), np.sum(weight[mine]))
        share = np.bincount(person_index[mine], weights=weight[mine] * wrong[mine])
        wrong_persons[name] = int(np.sum(share > 0.5))
    return {
        "persons": count,
        "accuracy": 1.0 - _ratio(np.sum(weight * wrong), np.sum(weight)),
        "balanced_accuracy": 1.0 - float(np.nanmean(list(error_rate.values()))),
        "error_rate": error_rate,
        "wrong_persons": wrong_persons,
    }


def format_persons(report: dict) -> str:
    """`person_report` as three lines under the per-image report."""
    persons, errors, wrong = report["persons"], report["error_rate"], report["wrong_persons"]
    return "\n".join(
        [
            "",
            f"per person ({report['source']}): every person weighs the same, whatever their "
            f"image count; persons " + ", ".join(f"{n} {persons[n]}" for n in CLASS_NAMES),
            f"accuracy(%): {_pct(report['accuracy'])}   balanced accuracy(%): "
            f"{_pct(report['balanced_accuracy'])}   error% "
            + ", ".join(f"{n} {_pct(errors[n])}" for n in CLASS_NAMES),
            "persons wrong on most of their images: "
            + ", ".join(f"{n} {wrong[n]} of {persons[n]}" for n in CLASS_NAMES),
        ]
    )


def format_groups(report: dict) -> str:
    """The per-group table of `group_report`, one line per group, the worst named below it."""
    head = "".join(f"{'n ' + n:>9}{'error% ' + n:>14}" for n in CLASS_NAMES)
    lines = ["", f"{'group':<16}{'n':>6}{'accuracy%':>11}{'balanced%':>11}{head}"]
    for group, part in report["groups"].items():
        cells = "".join(
            f"{part['support'][n]:>9}{_pct(part['error_rate'][n]):>14}" for n in CLASS_NAMES
        )
        lines.append(
            f"{group:<16}{part['n']:>6}{_pct(part['accuracy']):>11}"
            f"{_pct(part['balanced_accuracy']):>11}{cells}"
        )
    worst = report["worst"]
    if worst:
        lines.append(
            f"worst group: {worst['group']} ({worst['class']} error {_pct(worst['error_rate'])}%)"
        )
    return "\n".join(lines)


def face_report(
    samples: "Samples",
    p_woman: np.ndarray,
    has_face: np.ndarray,
    crops: FaceCounts,
    threshold: float,
) -> dict:
    """Detection counts and accuracy with and without the images where no face was found."""
    correct = (p_woman >= threshold).astype(int) == samples.labels
    return {
        "found": crops.found,
        "none": crops.none,
        "several": crops.several,
        "no_face_policy": "classified as the whole image",
        "accuracy_with_face": float(correct[has_face].mean()) if has_face.any() else 0.0,
        "accuracy_no_face_wrong": float((correct & has_face).mean()),
        "no_face_paths": [path for path, face in zip(samples.paths, has_face) if not face],
    }


def errors_csv(samples: "Samples", p_woman: np.ndarray, threshold: float) -> str:
    """CSV text listing the misclassified images: path, true and predicted class, P(woman)."""
    from gender.tables import csv_text

    rows = []
    for path, label, p in zip(samples.paths, samples.labels, p_woman):
        predicted = int(p >= threshold)
        if predicted != label:
            rows.append([path, CLASS_NAMES[label], CLASS_NAMES[predicted], f"{p:.4f}"])
    return csv_text(["path", "true", "predicted", "p_woman"], rows)


def save_plots(folder: Path, report: dict, labels: "ArrayLike", p_woman: "ArrayLike") -> None:
    """Write folder/confusion_matrix.png and folder/pr_curves.png for one evaluation."""
    from matplotlib.figure import Figure  # no pyplot: no global backend to choose
    from sklearn.metrics import precision_recall_curve  # only here: its import takes 0.5 s

    from gender.atomic import atomic_path

    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    matrix = report["confusion_matrix"]
    ax.imshow(matrix, cmap="Blues")
    middle = (max(map(max, matrix)) + min(map(min, matrix))) / 2
    for i in range(2):
        for j in range(2):
            # white on the dark cells, black on the light ones: readable on every shade
            colour = "white" if matrix[i][j] > middle else "black"
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center", color=colour, fontsize=14)
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=CLASS_NAMES,
        yticklabels=CLASS_NAMES,
        xlabel="predicted",
        ylabel="true",
        title="confusion matrix",
    )
    fig.tight_layout()
    with atomic_path(folder / "confusion_matrix.png") as tmp:
        fig.savefig(tmp, dpi=100)

    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    for label, name in enumerate(CLASS_NAMES):
        scores = p_woman if label == 1 else 1 - p_woman
        precision, recall, _ = precision_recall_curve(labels == label, scores)
        ax.step(recall, precision, where="post", label=f"{name} (AP {report['ap'][name]:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    ax.legend()
    fig.tight_layout()
    with atomic_path(folder / "pr_curves.png") as tmp:
        fig.savefig(tmp, dpi=100)
