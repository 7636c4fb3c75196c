"""What the prediction CLIs show: answer lines, CSV tables and pictures, from Predictor results.

The one place that turns `gender.predictor` dataclasses into text and images, so
gender_single_predict.py, the demo and a library caller print the same thing.
"""

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gender import UserError
from gender.faces import Face, whole_image_face
from gender.metrics import UNCERTAIN
from gender.predictor import FaceResult, FolderResult, PhotoResult, Predictor, predicted_class
from gender.tables import csv_text

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
        from gender.atomic import write_text

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
        from gender.explain import add_legend, number_faces

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

    from gender.atomic import atomic_path
    from gender.images import is_image_file

    if not is_image_file(path):
        raise UserError(f"{path}: not an image file name (use .jpg or .png)")
    ok, encoded = cv2.imencode(Path(path).suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError(f"{path}: OpenCV cannot write this format")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
