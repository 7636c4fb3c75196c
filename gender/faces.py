"""Find faces and their eyes in a photo, turn each upright by its eyes and crop it like the data.

The detector is MTCNN from the `mtcnn` package (its three small networks ship inside the wheel, so
nothing is downloaded at run time). The package runs on TensorFlow, whose import alone takes
seconds, so the fast path (a LiteRT model, `fast=True`) runs the same networks converted to
TFLite (weights/detector/) with `gender.lite_faces`, which finds the same faces without
TensorFlow; single photos predicted under Keras keep the package. Both load on first use.

Which detector runs is decided once, in `_detector`, by what is installed; `gender.predictor`
asks for the fast one when its model runs under LiteRT. Drawing lives in `gender.output`.

`face_crops` is the one function that turns a photo into model inputs: prediction, evaluation and
training with --detect-faces and `dataset.py crop` all call it (directly or through
`decode_face_crops`), so training and prediction see the same framing.
"""

import functools
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender import UserError, lite_faces
from gender.console import Progress, warn
from gender.data import new_array
from gender.images import BadImageError, read_image, resize
from gender.lite_faces import MIN_FACE_SIZE

if TYPE_CHECKING:
    from gender.data import Samples

# The crop reproduces the framing of the aligned UTKFace crops (one of the two sets the bundled
# face model learns from). Measured by running the detector on 80 adult UTK images (200x200): the
# eye centre sits at x 0.49 / y 0.29 of the frame (p10-p90 of y: 0.277-0.303), the eyes are 0.384
# of the width apart (p10-p90 0.360-0.409), eye centre to mouth centre 0.389. So the crop is
# 1 / 0.384 = 2.6 eye distances wide with the eyes 0.29 of the way down.
DEFAULT_MARGIN = 2.6  # crop width in eye distances
EYE_LINE = 0.29  # eye centre's height in the crop, as a fraction of the crop height
MOUTH_PER_EYE = 0.389 / 0.384  # eye-mouth distance per eye distance in a frontal face
# Tight web crops lose their faces when the face fills the frame: MTCNN needs some context. A 20%
# black border found a face in 150 of 150 sampled faces_web images instead of 145, for ~10% time.
DETECT_PAD = 0.2
# Phone photos are large; the detector's time grows with the pixels, so it looks at a copy whose
# long side is at most this (faces under ~20 px there are missed). Crops come from the original.
DETECT_MAX_SIDE = 1024
# A face in a portrait or a crop is rarely under a tenth of the picture's shorter side, so by
# default the detector skips the pyramid levels that only find smaller faces (never under MTCNN's
# own 20 px): a 640 px portrait costs a quarter of the time, with the same boxes, since the levels
# kept are computed exactly as before. `min_face` lowers it for group photos with small faces.
MIN_FACE_FRACTION = 0.1
# A detected face is classified as the mean P(woman) of four views: cropped at the toolkit's
# framing and at 3.2 eye distances (a little more hair and neck), each also mirrored. Measured
# with the bundled model, gender_mAP.py --detect-faces (balanced accuracy, one view -> four): UTK
# adults 96.97 -> 97.63%, BFW validation 94.58 -> 95.33%, faces_web 98.91 -> 98.91%. Four model
# runs per face cost little beside the detection; crops classified as they are get one run.
VIEW_MARGINS = (DEFAULT_MARGIN, 3.2)


@dataclass
class Face:
    """One detected face, in the pixel coordinates of the image it was found in."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float  # detector confidence, 0..1
    landmarks: np.ndarray  # (5, 2) x, y: left eye, right eye, nose, mouth left, mouth right

    @property
    def eyes(self) -> np.ndarray:
        """(2, 2): the face's left and right eye as MTCNN names them (image left, image right
        on an upright face)."""
        return self.landmarks[:2]

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


_local = threading.local()  # one LiteRT detector per thread: an interpreter is not thread-safe


def _detector(fast: bool):
    """MTCNN as a function (rgb, min_face_size) -> (N, 16) rows; rgb (H, W, 3) uint8.

    fast: the TFLite networks under LiteRT when ai_edge_litert and the files are there (no
    TensorFlow; one detector per thread, so folders detect on several threads at once);
    otherwise, and always for fast=False, the `mtcnn` package (seconds to load, one per process).
    """
    if fast:
        if lite_faces.available():
            if not hasattr(_local, "detector"):
                # Folders run one detector per core on worker threads (`largest_faces`), each
                # interpreter with one thread; a photo on the main thread gets them all.
                worker = threading.current_thread() is not threading.main_thread()
                threads = 1 if worker else lite_faces.THREADS
                _local.detector = lite_faces.LiteDetector(threads=threads)
            return _local.detector.detect
    return _package_detector()


@functools.cache
def _package_detector():
    """The `mtcnn` package's detector (imports TensorFlow), once per process."""
    try:
        from mtcnn import MTCNN
    except ImportError:
        raise UserError(
            "face detection needs the mtcnn package (pip install -r requirements.txt)"
        ) from None
    detect = functools.partial(
        MTCNN().detect_faces, box_format="xyxy", output_type="numpy", fit_to_image=False
    )
    # The package keeps its full pyramid (the reference the fast path is tested against).
    return lambda rgb, min_face: detect(rgb)


def default_min_face(height: int, width: int) -> float:
    """The smallest face looked for by default: a tenth of the shorter side, at least MTCNN's
    own smallest (20 px)."""
    return max(float(MIN_FACE_SIZE), MIN_FACE_FRACTION * min(height, width))


def detect_faces(rgb: np.ndarray, fast: bool = False, min_face: float | None = None) -> list[Face]:
    """Every face MTCNN finds in an (H, W, 3) uint8 RGB image, largest first.

    Args:
        fast: detect without TensorFlow when possible (see `_detector`); same faces either way.
        min_face: the smallest face side sought, in pixels of `rgb`; None: `default_min_face`.
            Only the fast detector uses it (the package always runs its whole pyramid).
    """
    import cv2

    height, width = rgb.shape[:2]
    if min_face is None:
        min_face = default_min_face(height, width)
    min_face = max(float(min_face), 1.0)
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    image = rgb
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        # the exact factors of the rounded size, so boxes map back without a rounding shift
        scale_x, scale_y = size[0] / width, size[1] / height
    else:
        scale_x = scale_y = 1.0
    pad = int(DETECT_PAD * max(image.shape[:2]))
    image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    # in the copy's pixels; under 20 the whole pyramid runs (MTCNN's own smallest face)
    sought = min_face * min(scale_x, scale_y)
    rows = _detector(fast)(np.ascontiguousarray(image), sought)
    faces = []
    # A row: image index, x1, y1, x2, y2, score, then the 5 landmarks' x, then their y.
    for row in np.asarray(rows, dtype=np.float64).reshape(-1, 16):
        box = (row[1:5] - pad) / (scale_x, scale_y, scale_x, scale_y)
        points = (np.stack([row[6:11], row[11:16]], axis=1) - pad) / (scale_x, scale_y)
        x1, y1, x2, y2 = box
        box = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
        faces.append(Face(tuple(float(v) for v in box), float(row[5]), points))
    faces.sort(key=lambda face: face.area, reverse=True)
    return faces


def crop_matrix(face: Face, size: Sequence[int], margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """The 2x3 affine map from image pixels to an upright crop of `size` = (height, width).

    The crop is `margin` eye distances wide, its eye line horizontal and EYE_LINE of the way down.
    """
    height, width = size
    left, right = face.landmarks[0], face.landmarks[1]
    mouth = face.landmarks[3:5].mean(axis=0)
    centre = (left + right) / 2
    across = right - left
    eye_distance = float(np.hypot(*across))
    down = np.array([-across[1], across[0]]) / max(eye_distance, 1e-6)
    if np.dot(mouth - centre, down) < 0:  # the mouth must be below the eyes: upside-down face
        across, down = -across, -down
    # A turned head brings the eyes together but not the mouth; a bowed one the reverse. The larger
    # of the two estimates of the eye distance is the one foreshortening did not shrink.
    mouth_distance = float(np.dot(mouth - centre, down))
    eye_distance = max(eye_distance, mouth_distance / MOUTH_PER_EYE, 1.0)
    crop_width = margin * eye_distance
    pixels = width / crop_width  # output pixels per image pixel
    unit_across = across / max(float(np.hypot(*across)), 1e-6)
    # Output (u, v) = pixels * R (p - centre) + (width / 2, EYE_LINE * height).
    rotation = np.stack([unit_across, down]) * pixels
    offset = np.array([width / 2, EYE_LINE * height]) - rotation @ centre
    return np.hstack([rotation, offset[:, None]])


def align_crop(
    rgb: np.ndarray, face: Face, size: Sequence[int], margin: float = DEFAULT_MARGIN
) -> np.ndarray:
    """The face turned upright by its eyes and cropped: (height, width, 3) uint8 RGB.

    Pixels outside the photo repeat its edge: tight web crops need some, a black band would be
    something the models never saw in training, and mirroring puts ghost faces at the sides.
    A large face is shrunk with area averaging, as `images.resize` does.
    """
    import cv2

    height, width = size
    matrix = crop_matrix(face, size, margin)
    shrink = float(np.hypot(*matrix[0, :2]))  # output pixels per image pixel
    if shrink >= 1:
        return cv2.warpAffine(
            rgb, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    # Warp at the photo's own resolution first, then shrink: a direct warp would skip pixels.
    full = (max(1, round(height / shrink)), max(1, round(width / shrink)))
    big = cv2.warpAffine(
        rgb,
        crop_matrix(face, full, margin),
        (full[1], full[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return resize(big, size)


def face_views(
    rgb: np.ndarray, face: Face, size: Sequence[int], margins: Sequence[float] = VIEW_MARGINS
) -> np.ndarray:
    """The face cropped at each margin, each crop followed by its mirror image:
    (2 * len(margins), height, width, 3) uint8, the views prediction averages over."""
    crops = [align_crop(rgb, face, size, margin) for margin in margins]
    return np.stack([view for crop in crops for view in (crop, crop[:, ::-1])])


def whole_image_views(image: np.ndarray) -> np.ndarray:
    """The views of an image without a face, resized whole: it and its mirror, (2, H, W, 3)."""
    return np.stack([image, image[:, ::-1]])


def face_crops(
    rgb: np.ndarray,
    size: Sequence[int],
    margin: float = DEFAULT_MARGIN,
    fast: bool = False,
    min_face: float | None = None,
    views: bool = False,
) -> list[tuple[Face, np.ndarray]]:
    """Detect and crop every face: [(Face, crop)], largest face first; [] when there is none.

    The one path from a photo to model inputs (see the module docstring); `fast` and `min_face`
    as in `detect_faces`. views: each crop is instead the face's `face_views` (prediction),
    whose widths are VIEW_MARGINS, so `margin` must then be left at its default.
    """
    if views:
        if margin != DEFAULT_MARGIN:
            raise ValueError(f"views are cropped at {VIEW_MARGINS}, not at margin {margin}")
        return [(face, face_views(rgb, face, size)) for face in detect_faces(rgb, fast, min_face)]
    return [
        (face, align_crop(rgb, face, size, margin)) for face in detect_faces(rgb, fast, min_face)
    ]


@dataclass
class CropSummary:
    """What detection found in a set of images (for the reports)."""

    found: int = 0  # images with at least one face
    none: int = 0  # images without a face
    several: int = 0  # images with more than one face (the largest was used)
    unreadable: int = 0

    def line(self) -> str:
        total = self.found + self.none
        return (
            f"faces: found in {self.found} of {total} images, none in {self.none}, "
            f"several in {self.several} (largest used)"
            + (f"; {self.unreadable} unreadable" if self.unreadable else "")
        )


def largest_faces(
    paths: Sequence[str],
    size: Sequence[int],
    summary: CropSummary,
    label: str = "detecting faces",
    min_face: float | None = None,
    margins: Sequence[float] | None = None,
    views: bool = False,
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """Yield (index, rgb, crop) for each readable image, in order: its largest face, or None.

    A labelled folder shows one person per image, so when a picture holds several faces the
    largest is taken as that person. Unreadable images are reported, counted and not yielded.
    Images are decoded, searched and cropped on one thread per core (OpenCV and LiteRT release
    the GIL), a bounded number ahead of the caller, who can run the model meanwhile.
    `margins`: each image's crop width in eye distances (default DEFAULT_MARGIN for all).
    `views`: each crop is the face's `face_views` instead (prediction); not with `margins`
    (`face_crops` refuses a margin with views).
    """

    def work(i):
        try:
            rgb = read_image(paths[i])
        except BadImageError as err:
            return err, None, None
        margin = DEFAULT_MARGIN if margins is None else margins[i]
        # The LiteRT networks find the same faces as the package (tests/test_faces.py), quicker
        crops = face_crops(rgb, size, margin, fast=True, min_face=min_face, views=views)
        return None, rgb, crops

    def finish(i, future):
        progress.update(i)
        err, rgb, crops = future.result()
        if err is not None:
            warn(f"{err} (skipped)")
            summary.unreadable += 1
            return
        summary.several += len(crops) > 1
        summary.found += bool(crops)
        summary.none += not crops
        yield i, rgb, crops[0][1] if crops else None

    # The package detector (no LiteRT) is one TensorFlow model per process: one thread then.
    workers = (os.cpu_count() or 1) if lite_faces.available() else 1
    progress = Progress(len(paths), label)
    with ThreadPoolExecutor(workers) as pool:
        pending = deque()
        for i in range(len(paths)):
            pending.append((i, pool.submit(work, i)))
            if len(pending) > 4 * workers:  # a few images per worker ahead: bounded memory
                yield from finish(*pending.popleft())
        while pending:
            yield from finish(*pending.popleft())
    progress.done()


def decode_face_crops(
    samples: "Samples",
    size: Sequence[int],
    cache_dir: str | Path | None = None,
    whole_if_none: bool = False,
    label: str = "detecting faces",
) -> tuple[np.ndarray, "Samples", np.ndarray, CropSummary]:
    """`decode_images` with detection: the largest face of each image, aligned and cropped.

    Args:
        whole_if_none: an image without a face is kept as the whole image resized (evaluation
            keeps every image in its denominator); otherwise it is left out (training).

    Returns:
        (images, kept, has_face, summary): images (N, H, W, 3) uint8 for the N images of `kept`;
        has_face (N,) bool; summary a CropSummary.
    """
    height, width = size
    store = new_array((len(samples), height, width, 3), np.uint8, cache_dir)
    kept, has_face, summary = [], [], CropSummary()
    for i, rgb, crop in largest_faces(samples.paths, size, summary, label):
        if crop is None and not whole_if_none:
            continue
        store[len(kept)] = crop if crop is not None else resize(rgb, size)
        kept.append(i)
        has_face.append(crop is not None)
    if not kept:
        raise UserError("no image with a face" if summary.none else "no readable images")
    return store[: len(kept)], samples.subset(kept), np.array(has_face, bool), summary


def whole_image_face(rgb: np.ndarray) -> Face:
    """A pseudo-face covering the whole image, to annotate an undetected prediction alike."""
    height, width = rgb.shape[:2]
    return Face((0.0, 0.0, float(width - 1), float(height - 1)), 1.0, np.zeros((5, 2)))
