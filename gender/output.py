"""What the CLIs show: answer lines, CSV tables and pictures from Predictor results, and an
evaluation's text.

The one place that turns `gender.predictor` dataclasses and a `gender.evaluation.Evaluation`
into text and images, so gender_single_predict.py, gender_mAP.py, the demo and a library caller
print the same thing. (The evaluation's HTML page and plots are `gender.report`'s.)
"""

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender import CLASS_NAMES, UserError
from gender.atomic import atomic_path, write_text
from gender.console import command, warn
from gender.explain import add_legend, number_faces
from gender.faces import Face, whole_image_face
from gender.groups import NO_GROUP
from gender.images import is_image_file
from gender.metrics import UNCERTAIN, UNCERTAIN_ANSWER, answers
from gender.predictor import FaceResult, FolderResult, PhotoResult, Predictor, predicted_class
from gender.tables import csv_text

if TYPE_CHECKING:
    from gender.data import Samples
    from gender.evaluation import Evaluation

Band = tuple[float, float] | None  # --uncertain LOW:HIGH: no answer strictly inside it

FACE_COLUMNS = ["path", "face", "x1", "y1", "x2", "y2", "label", "probability", "p_woman"]
IMAGE_COLUMNS = ["path", "label", "probability", "p_woman"]


def answer(p_woman: float, threshold: float, band: Band = None) -> tuple[str, float]:
    """(label, its probability): the predicted class, or `uncertain` inside `band` (then the
    probability of the class P(woman) leans to)."""
    label, probability = predicted_class(p_woman, threshold)
    if band is not None and band[0] < p_woman < band[1]:
        return UNCERTAIN, probability
    return label, probability


def verdict(p_woman: float, threshold: float, about: str = "", band: Band = None) -> str:
    """One image's or face's answer in words, as the single-image lines print it: the label and
    the comparison that chose it, then `about` (the model and backend, `model_phrase`).

    `woman (P(woman) 0.464 >= threshold 0.447; bundled face model, int8)`
    `uncertain (P(woman) 0.464 between 0.3 and 0.6, threshold 0.447; bundled face model, int8)`
    """
    label, _ = answer(p_woman, threshold, band)
    if label == UNCERTAIN:
        inside = f"between {band[0]:g} and {band[1]:g}"
        return f"{label} (P(woman) {p_woman:.3f} {inside}, threshold {threshold:.3f}{about})"
    sign = ">=" if label == "woman" else "<"
    return f"{label} (P(woman) {p_woman:.3f} {sign} threshold {threshold:.3f}{about})"


def model_phrase(predictor: Predictor) -> str:
    """`; bundled face model, int8`: the end of every answer line (`verdict`'s `about`)."""
    return f"; {predictor.model_name}, {predictor.backend_name}"


def left_to_right(faces: Sequence[FaceResult]) -> list[FaceResult]:
    """The faces in reading order, as the lines, the CSV and the pictures number them."""
    return sorted(faces, key=lambda result: (result.face.box[0], result.face.box[1]))


def face_lines(photo: PhotoResult, about: str = "", band: Band = None) -> list[str]:
    """`path: face i at x1,y1,x2,y2 = ...: verdict` for each face of one photo, left to right."""
    lines = []
    for i, result in enumerate(left_to_right(photo.faces), 1):
        box = ",".join(str(round(v)) for v in result.face.box)
        said = verdict(result.p_woman, result.threshold, about, band)
        lines.append(f"{photo.path}: face {i} at x1,y1,x2,y2 = {box}: {said}")
    return lines


def faces_csv(photos: list[PhotoResult], band: Band = None) -> str:
    """One CSV row per face; a photo without a face gets one `no face` row."""
    rows = []
    for photo in photos:
        if not photo.faces:
            rows.append([photo.path, 0, "", "", "", "", "no face", "", ""])
        for i, result in enumerate(left_to_right(photo.faces), 1):
            box = [round(v) for v in result.face.box]
            p = result.p_woman
            label, probability = answer(p, result.threshold, band)
            rows.append([photo.path, i, *box, label, f"{probability:.4f}", f"{p:.4f}"])
    return csv_text(FACE_COLUMNS, rows)


def images_csv(result: FolderResult, band: Band = None) -> str:
    """One CSV row per image: path, predicted class (or `uncertain`), its probability, P(woman)."""
    rows = image_rows(result.samples.paths, result.p_woman, result.threshold, band)
    return csv_text(IMAGE_COLUMNS, rows)


def image_rows(
    paths: Sequence[str], p_woman: Sequence[float], threshold: float, band: Band = None
) -> list[list]:
    """The IMAGE_COLUMNS rows of `images_csv` (also what --ray writes, a block at a time)."""
    rows = []
    for path, p in zip(paths, p_woman):
        label, probability = answer(p, threshold, band)
        rows.append([path, label, f"{probability:.4f}", f"{p:.4f}"])
    return rows


def emit(text: str, path: str | Path | None = None) -> None:
    """Write `text` to the file `path` (atomically), or to stdout without one."""
    if path:
        write_text(path, text)
    else:
        sys.stdout.write(text)


def write_pictures(
    predictor: Predictor,
    rgb: np.ndarray,
    results: list[FaceResult],
    detected: bool,
    annotate: str | Path | None = None,
    explain: str | Path | None = None,
) -> None:
    """Write --annotate (boxes and labels) and --explain (Grad-CAM) for one photo and say so.

    Args:
        results: the photo's faces; with detected=False one `whole_image_result`, and the
            heatmap covers the whole image.
    """
    if annotate:
        results = left_to_right(results)
        numbered = detected and len(results) > 1
        labels = [f"{i}: " * numbered + f"{r.label} {r.probability:.2f}"
                  for i, r in enumerate(results, 1)]  # fmt: skip
        write_image(annotate, draw_faces(rgb, [r.face for r in results], labels))
        print(f"boxes and labels drawn in {annotate}")
    if explain:
        results = left_to_right(results)
        picture = predictor.explain(rgb, [r.face for r in results] if detected else None)
        if detected:
            picture = number_faces(picture, [r.face for r in results])
            text = ", ".join(f"face {i}: {r.label} {r.probability:.2f}"
                             for i, r in enumerate(results, 1))  # fmt: skip
            evidence = "each face's answer"
        else:
            text = f"{results[0].label} {results[0].probability:.2f}"
            evidence = results[0].label
        # the heatmap needs gradients: the .keras model runs, so its numbers are the ones shown
        caption = f"Grad-CAM ({predictor.backend_name} model) of {text}"
        write_image(explain, add_legend(picture, caption, evidence))
        print(
            f"Grad-CAM heatmap written to {explain}: red where the {predictor.backend_name} "
            "model saw most evidence for its answer. The P(woman) above is that model's: "
            "--explain runs it whatever --backend, and the default int8 export's can differ a "
            "little"
        )


def whole_image_result(rgb: np.ndarray, p_woman: float, threshold: float) -> FaceResult:
    """The answer for an image classified undetected, as a face covering all of it."""
    return FaceResult(whole_image_face(rgb), float(p_woman), threshold)


def draw_faces(rgb: np.ndarray, faces: Sequence[Face], labels: Sequence[str]) -> np.ndarray:
    """A copy of the image with each face's box and its label text drawn on it (RGB)."""
    import cv2

    out = rgb.copy()
    thickness = max(1, round(max(rgb.shape[:2]) / 300))
    for face, text in zip(faces, labels):
        x1, y1, x2, y2 = (round(v) for v in face.box)
        colour = (230, 60, 60) if "woman" in text.split() else (60, 110, 230)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        scale = max(0.4, (x2 - x1) / 250)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y1 - th - base - 2)  # above the box, or inside it at the top edge
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), colour, -1)
        cv2.putText(
            out,
            text,
            (x1 + 1, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
    return out


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB image atomically; the format comes from the suffix (.jpg, .png).

    Encoded in memory and written by Python: cv2.imwrite crashes on file names that are not
    valid UTF-8.
    """
    import cv2

    if not is_image_file(path):
        raise UserError(f"{path}: not an image file name (use .jpg or .png)")
    ok, encoded = cv2.imencode(Path(path).suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError(f"{path}: OpenCV cannot write this format")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


# --- an evaluation in words: what gender_mAP.py prints ---------------------------------------


def print_evaluation(evaluation: "Evaluation", title: str) -> None:
    """The text report of an evaluation on stdout (a warning on stderr for images in no group):
    the figures, their intervals, the band's figures, the coverage table, the threshold advice,
    then the per-person, per-group and face-detection figures when the evaluation has them."""
    report, threshold = evaluation.report, evaluation.threshold
    print(format_report(report, title))
    print(format_intervals(report, report["intervals"]))
    if "uncertain" in report:
        print(format_uncertain(report["uncertain"]))
    print(format_coverage(report["coverage"]))
    print(advice_sentence(report["threshold_advice"], threshold))
    if "by_person" in report:
        print(format_persons(report["by_person"]))
    if "by_group" in report:
        print(format_groups(report["by_group"]))
        unmatched = report["by_group"]["groups"].get(NO_GROUP, {}).get("n", 0)
        if unmatched:
            source = evaluation.group_source
            warn(f"--groups {source}: {unmatched} image(s) in no group (counted as {NO_GROUP})")
    if "faces" in report:
        faces = report["faces"]
        print(evaluation.crops.line())
        print(
            f"accuracy(%) over all {len(evaluation.samples)} images (no face: whole image) "
            f"{100 * report['accuracy']:.2f}; over the {faces['found']} with a face "
            f"{100 * faces['accuracy_with_face']:.2f}; counting no face as wrong "
            f"{100 * faces['accuracy_no_face_wrong']:.2f}"
        )
    if evaluation.skipped:
        print(f"{evaluation.skipped} unreadable image(s) skipped (listed above)")


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.2f}"


def format_report(report: dict, title: str) -> str:
    """The text report: accuracy, AP per class and mAP, then the confusion rates per true class."""
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
    lines.append(
        "(true==>answered: of the images of each true class, the share given each answer, so "
        "each class's two rows add up to 1)"
    )
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


def format_intervals(report: dict, intervals: dict) -> str:
    """The headline figures with their intervals, one line each."""
    unit = intervals["unit"]
    head = f"{round(100 * intervals['confidence'])}% confidence intervals (bootstrap over {unit})"
    lines = ["", head]
    rows = [
        ("accuracy", report["accuracy"], intervals["accuracy"]),
        ("balanced accuracy", report["balanced_accuracy"], intervals["balanced_accuracy"]),
        ("mAP", report["map"], intervals["map"]),
    ]
    rows += [
        (f"error {n}", report["error_rate"][n], intervals["error_rate"][n]) for n in CLASS_NAMES
    ]
    for name, value, (low, high) in rows:
        lines.append(f"{name + '(%)':<22}{_pct(value):>7}   [{_pct(low)}, {_pct(high)}]")
    return "\n".join(lines)


def format_uncertain(report: dict) -> str:
    """`uncertain_report` as two lines."""
    low, high = report["band"]
    errors = report["error_rate_answered"]
    return "\n".join(
        [
            "",
            f"uncertain when {low:g} < P(woman) < {high:g}: {report['unanswered']} image(s) "
            f"unanswered ({_pct(report['unanswered_share'])}%), {report['answered']} answered",
            f"on the answered: accuracy(%) {_pct(report['accuracy_answered'])}   balanced "
            f"accuracy(%) {_pct(report['balanced_accuracy_answered'])}   error% "
            + ", ".join(f"{n} {_pct(errors[n])}" for n in CLASS_NAMES),
        ]
    )


def format_coverage(rows: list[dict]) -> str:
    """The coverage table as text: how accuracy grows as the model answers less."""
    lines = ["", "answering only the surest share (distance of P(woman) from the threshold)"]
    lines.append(f"{'share':>7}{'answered':>10}{'accuracy%':>11}   uncertain band")
    for row in rows:
        band = row["band"]
        text = "none" if band is None else f"{band[0]:.3f}:{band[1]:.3f}"
        lines.append(
            f"{100 * row['share']:>6.0f}%{row['answered']:>10}{_pct(row['accuracy']):>11}   {text}"
        )
    return "\n".join(lines)


def advice_sentence(advice: dict, threshold: float) -> str:
    """One sentence: what the equal-error threshold would change on this set."""
    now, then = advice["error_rate_now"], advice["error_rate_at_equal_error"]
    eer = advice["equal_error_threshold"]
    if abs(eer - threshold) < 5e-4:
        return f"The threshold {threshold:.3f} already gives both classes about equal error rates."
    return (
        f"At the equal-error threshold {eer:.3f} (now {threshold:.3f}) the error rates would be "
        + ", ".join(f"{n} {_pct(then[n])}%" for n in CLASS_NAMES)
        + " (now "
        + ", ".join(f"{n} {_pct(now[n])}%" for n in CLASS_NAMES)
        + f") and accuracy {_pct(advice['accuracy_at_equal_error'])}% (now "
        f"{_pct(advice['accuracy_now'])}%). Chosen on this set itself, it flatters it: choose "
        f"it on a validation split ({command('train')} bundle --threshold val)."
    )


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


def errors_csv(
    samples: "Samples",
    p_woman: np.ndarray,
    threshold: float,
    band: Band = None,
) -> str:
    """CSV text of the misclassified images, most wrong first: path, true and predicted class,
    P(woman), the threshold and the margin |P(woman) - threshold| (how far past it the model
    went: the largest margins are its most confident mistakes). Images left `uncertain` by
    `band` are no mistakes and not listed."""
    labels, p_woman = np.asarray(samples.labels, int), np.asarray(p_woman, float)
    given = answers(p_woman, threshold, band)
    wrong = np.flatnonzero((given != labels) & (given != UNCERTAIN_ANSWER))
    margin = np.abs(p_woman - threshold)
    rows = [
        [samples.paths[i], CLASS_NAMES[labels[i]], CLASS_NAMES[given[i]],
         f"{p_woman[i]:.4f}", f"{threshold:.4f}", f"{margin[i]:.4f}"]
        for i in wrong[np.argsort(-margin[wrong], kind="mergesort")]
    ]  # fmt: skip
    return csv_text(["path", "true", "predicted", "p_woman", "threshold", "margin"], rows)
