"""The one definition of every number the toolkit reports.

AP is scikit-learn's `average_precision_score`, computed here with numpy (the same numbers, a
test compares; importing scikit-learn cost half a second of every evaluation): the step-wise
(non-interpolated) area under the precision-recall curve. It is not Keras' `AUC(curve="PR")`,
which interpolates. AP(woman) ranks images by p = P(woman); AP(man) by 1 - p; mAP is the mean
of the two. The report's other parts (face counts, the confidence intervals, the coverage
table, the threshold advice) are computed here too, from the same numbers. Numbers only: the
words that present them are `gender.output`'s, the pictures `gender.report`'s.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gender import CLASS_NAMES, THRESHOLD, UserError
from gender.groups import NO_GROUP

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from gender.data import Samples


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


def _nanmean(values: Sequence[float]) -> float:
    """The mean of the numbers that are not NaN; NaN (no warning) when none is."""
    kept = [v for v in values if v == v]
    return float(np.mean(kept)) if kept else float("nan")


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


# --- Answering only when sure, and how sure the figures are ----------------------------------

UNCERTAIN = "uncertain"  # the answer inside an --uncertain band
UNCERTAIN_ANSWER = -1  # its code among the 0/1 class answers
COVERAGE_SHARES = (1.0, 0.95, 0.9, 0.8, 0.7, 0.5)
CONFIDENCE = 0.95  # of the bootstrap intervals
BOOTSTRAP_DRAWS = 1000


def answers(
    p_woman: "ArrayLike", threshold: float = THRESHOLD, band: tuple[float, float] | None = None
) -> np.ndarray:
    """Each image's answer: 1 woman, 0 man, or UNCERTAIN_ANSWER (-1) when LOW < P(woman) < HIGH
    for `band` = (LOW, HIGH); without a band every image is answered."""
    p_woman = np.asarray(p_woman, float)
    given = (p_woman >= threshold).astype(int)
    if band is not None:
        given[(p_woman > band[0]) & (p_woman < band[1])] = UNCERTAIN_ANSWER
    return given


def uncertain_report(
    labels: "ArrayLike", p_woman: "ArrayLike", threshold: float, band: tuple[float, float]
) -> dict:
    """The figures when the model may answer `uncertain` inside `band`: accuracy and each
    class's error rate over the answered images only, and how many were left unanswered."""
    labels = np.asarray(labels, int)
    given = answers(p_woman, threshold, band)
    answered = given != UNCERTAIN_ANSWER
    correct = answered & (given == labels)
    error_rate, unanswered = {}, {}
    for i, name in enumerate(CLASS_NAMES):
        mine = labels == i
        error_rate[name] = _ratio(np.sum(mine & answered & ~correct), np.sum(mine & answered))
        unanswered[name] = int(np.sum(mine & ~answered))
    n_answered = int(answered.sum())
    return {
        "band": [float(band[0]), float(band[1])],
        "answered": n_answered,
        "unanswered": len(labels) - n_answered,
        "unanswered_share": _ratio(len(labels) - n_answered, len(labels)),
        "unanswered_by_class": unanswered,
        "accuracy_answered": _ratio(int(correct.sum()), n_answered),
        "balanced_accuracy_answered": 1.0 - _nanmean(list(error_rate.values())),
        "error_rate_answered": error_rate,
    }


def coverage_table(
    labels: "ArrayLike",
    p_woman: "ArrayLike",
    threshold: float = THRESHOLD,
    shares: Sequence[float] = COVERAGE_SHARES,
) -> list[dict]:
    """Accuracy when the model answers only its surest share of the images.

    "Surest" is the distance of P(woman) from the threshold. Each row gives the share, the
    images answered, their accuracy and the `--uncertain` band that leaves the rest unanswered
    (None for 100%).
    """
    labels, p_woman = np.asarray(labels, int), np.asarray(p_woman, float)
    distance = np.abs(p_woman - threshold)
    order = np.argsort(-distance, kind="mergesort")
    correct = ((p_woman >= threshold).astype(int) == labels)[order]
    rows = []
    for share in shares:
        count = max(1, int(np.floor(share * len(labels) + 1e-9)))  # at most the share
        cut = float(distance[order][count - 1])
        # P(woman) lies in [0, 1]: so does a band that --uncertain accepts
        band = (
            None if count == len(labels) else [max(0.0, threshold - cut), min(1.0, threshold + cut)]
        )
        rows.append(
            {
                "share": float(share),
                "answered": count,
                "accuracy": float(correct[:count].mean()),
                "band": band,
            }
        )
    return rows


def threshold_sweep(
    labels: "ArrayLike", p_woman: "ArrayLike", thresholds: "ArrayLike | None" = None
) -> dict:
    """Each class's error rate at every threshold of a grid (default 0.00, 0.01, ..., 1.00)."""
    labels, p_woman = np.asarray(labels, int), np.asarray(p_woman, float)
    grid = np.linspace(0, 1, 101) if thresholds is None else np.asarray(thresholds, float)
    men, women = np.sort(p_woman[labels == 0]), np.sort(p_woman[labels == 1])
    man_error = 1.0 - np.searchsorted(men, grid, "left") / max(1, len(men))
    woman_error = np.searchsorted(women, grid, "left") / max(1, len(women))
    return {
        "threshold": grid.round(6).tolist(),
        "error_rate": {"man": man_error.tolist(), "woman": woman_error.tolist()},
    }


def threshold_advice(labels: "ArrayLike", p_woman: "ArrayLike", threshold: float) -> dict:
    """The equal-error threshold on this set and what moving there would change."""
    eer = equal_error_threshold(labels, p_woman)
    now, then = evaluate(labels, p_woman, threshold), evaluate(labels, p_woman, eer)
    return {
        "equal_error_threshold": eer,
        "error_rate_now": now["error_rate"],
        "error_rate_at_equal_error": then["error_rate"],
        "accuracy_now": now["accuracy"],
        "accuracy_at_equal_error": then["accuracy"],
        "balanced_accuracy_at_equal_error": then["balanced_accuracy"],
    }


def pr_curve(is_positive: "ArrayLike", scores: "ArrayLike") -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct score, from the highest, as `average_precision`."""
    is_positive, scores = np.asarray(is_positive, bool), np.asarray(scores, float)
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], is_positive[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    true_positives = np.cumsum(hits)[ends]
    return true_positives / max(1, true_positives[-1]), true_positives / (ends + 1)


def roc_curve(is_positive: "ArrayLike", scores: "ArrayLike") -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at each distinct score, from (0, 0)."""
    is_positive, scores = np.asarray(is_positive, bool), np.asarray(scores, float)
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], is_positive[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tp, fp = np.cumsum(hits)[ends], np.cumsum(~hits)[ends]
    return np.r_[0.0, fp / max(1, fp[-1])], np.r_[0.0, tp / max(1, tp[-1])]


def draw_counts(rng: np.random.Generator, units: int, size: int) -> np.ndarray:
    """(size, units) int32: how often each unit is drawn in each of `size` resamplings of
    `units` units with replacement (a bincount per row: far faster than a multinomial)."""
    drawn = rng.integers(0, units, (size, units)) + units * np.arange(size)[:, None]
    return np.bincount(drawn.ravel(), minlength=size * units).reshape(size, units).astype(np.int32)


def bootstrap_intervals(
    labels: "ArrayLike",
    p_woman: "ArrayLike",
    threshold: float = THRESHOLD,
    persons: Sequence[str] | None = None,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> dict:
    """95% percentile-bootstrap intervals of accuracy, balanced accuracy, each class's error
    rate and AP, and mAP.

    Each draw resamples the images with replacement; with `persons` it resamples persons (all
    of a drawn person's images together): frames of one person are not independent, and
    resampling them one by one would give intervals too narrow. A draw is a count per image, so
    AP needs one sort for all draws (a drawn image's copies tie, as in `average_precision`), and
    AP(man)'s ranking is AP(woman)'s read backwards (ties are whole groups either way).

    Returns:
        {"confidence": 0.95, "draws": n, "unit": "images" or "persons", "accuracy": [lo, hi],
        "balanced_accuracy": ..., "map": ..., "error_rate": {class: [lo, hi]}, "ap": {...}}
    """
    labels, p_woman = np.asarray(labels, int), np.asarray(p_woman, float)
    rng = np.random.default_rng(seed)
    correct = ((p_woman >= threshold).astype(int) == labels).astype(np.int32)
    if persons is not None:
        unit = _person_index(persons)[0]
        units = int(unit.max()) + 1
    else:
        unit, units = np.arange(len(labels)), len(labels)
    # images by P(woman), highest first; `ends` closes each run of tied scores, `starts` opens it
    order = np.argsort(-p_woman, kind="mergesort")
    ends = np.r_[np.flatnonzero(np.diff(p_woman[order])), len(order) - 1]
    starts = np.r_[0, ends[:-1] + 1]
    is_woman = (labels[order] == 1).astype(np.int32)
    values = {key: [] for key in ("accuracy", "balanced_accuracy", "map")}
    values.update({f"error_rate/{n}": [] for n in CLASS_NAMES})
    values.update({f"ap/{n}": [] for n in CLASS_NAMES})
    chunk = max(1, 4_000_000 // max(1, len(labels)))  # bounded memory: (chunk, N) counts
    for begin in range(0, draws, chunk):
        counts = draw_counts(rng, units, min(chunk, draws - begin))[:, unit]
        with np.errstate(invalid="ignore", divide="ignore"):
            values["accuracy"].append(counts @ correct / counts.sum(1))
            errors = []
            for i, name in enumerate(CLASS_NAMES):
                mine = counts[:, labels == i]
                rate = 1.0 - mine @ correct[labels == i] / mine.sum(1)
                values[f"error_rate/{name}"].append(rate)
                errors.append(rate)
            values["balanced_accuracy"].append(1.0 - np.nanmean(errors, axis=0))
            ranked = counts[:, order]
            seen = np.cumsum(ranked, axis=1)  # images at or above each score, P(woman) order
            women = np.cumsum(ranked * is_woman, axis=1)
            total, total_women = seen[:, -1:], women[:, -1:]
            ap_woman = _ap_from_counts(women[:, ends], seen[:, ends])
            # by P(man), highest first: the groups backwards, each counting what lies at or
            # below its first image in P(woman) order
            seen_before = np.where(starts > 0, seen[:, starts - 1], 0)
            women_before = np.where(starts > 0, women[:, starts - 1], 0)
            men_upto = (total - seen_before) - (total_women - women_before)
            ap_man = _ap_from_counts(men_upto[:, ::-1], (total - seen_before)[:, ::-1])
            values["ap/man"].append(ap_man)
            values["ap/woman"].append(ap_woman)
            values["map"].append((ap_man + ap_woman) / 2)
    tail = 100 * (1 - CONFIDENCE) / 2
    out = {"confidence": CONFIDENCE, "draws": draws, "unit": "persons" if persons else "images"}
    for key, parts in values.items():
        drawn = np.concatenate(parts)
        drawn = drawn[np.isfinite(drawn)]
        bounds = [float("nan")] * 2 if not len(drawn) else np.percentile(drawn, [tail, 100 - tail])
        interval = [float(b) for b in bounds]
        if "/" in key:
            group, name = key.split("/")
            out.setdefault(group, {})[name] = interval
        else:
            out[key] = interval
    return out


def _ap_from_counts(true_positives: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """AP per row from cumulative positives and images at each distinct score, best first."""
    precision = np.where(seen > 0, true_positives / np.maximum(seen, 1), 0.0)
    recall = true_positives / true_positives[:, -1:]
    return np.sum(np.diff(recall, prepend=0.0, axis=1) * precision, axis=1)
