"""Whether the images look like what a model was trained on, before it answers for them.

A pedestrian model given a portrait, or a face model given full-body crops, still answers "man"
or "woman" with a confident-looking P(woman), and an evaluation prints a report of near-chance
figures without a word. Two cheap signs catch the usual mix-ups:

- shape: each model takes one input shape (a face model square crops, the pedestrian model
  224x96, 2.3 times as tall as wide); images far from it were cut for another task. Read from
  the file headers of up to SAMPLE images, no decoding.
- a face filling the image: a pedestrian crop shows a whole body, whose face is a small part of
  it; the LiteRT face detector runs on a few images (a pedestrian model only).

The CLIs print the result as one warning, which --no-task-check silences.
"""

import math
import os
from collections.abc import Sequence

from gender.console import warn
from gender.faces import detect_faces
from gender.images import BadImageError, header_size, read_image

SAMPLE = 64  # images whose header is read: the verdict is about the set, not each image
# every size header sits in it (a JPEG's frame header follows at most 64 kB of EXIF)
HEADER_BYTES = 256 * 1024
FACE_SAMPLE = 4  # images searched for a face (a pedestrian model only)
# how far an image's height/width may be from the model's (as a factor) before it looks cut for
# another task: square face crops vs 224x96 pedestrian crops differ by 2.3; a 3:4 portrait is
# 1.33 from a square crop and 1.75 from a pedestrian crop
SHAPE_FACTOR = 1.6
FACE_FILLS = 0.25  # a face this share of the image's height: a portrait, not a body crop


def _spread(paths: Sequence[str], count: int) -> list[str]:
    """Up to `count` paths spread evenly over `paths` (a folder sorted by class has both)."""
    if len(paths) <= count:
        return list(paths)
    step = len(paths) / count
    return [paths[int(k * step)] for k in range(count)]


def _shape(path: str) -> tuple[int, int] | None:
    """(height, width) from the file's header; None when it cannot tell (left to the decoder).

    Only the file's first HEADER_BYTES are read: this runs before the real work, on up to
    SAMPLE files that may be large photos.
    """
    try:
        if not os.path.isfile(path):  # a FIFO would block; the decoder reports the rest
            return None
        with open(path, "rb") as file:
            size = header_size(file.read(HEADER_BYTES))
    except (OSError, ValueError):
        return None
    return (size[1], size[0]) if size and min(size) > 0 else None


def _face_fills(path: str) -> bool:
    try:
        rgb = read_image(path)
    except BadImageError:
        return False
    faces = detect_faces(rgb, fast=True)
    return bool(faces) and faces[0].box[3] - faces[0].box[1] >= FACE_FILLS * rgb.shape[0]


def mismatch(task: str, size: Sequence[int], paths: Sequence[str]) -> str | None:
    """Why the images classified whole (`paths`) do not look like `task`'s input, in words for
    a warning; None when they do (or nothing can be told).

    Args:
        task: the model's task, "face" or "pedestrian".
        size: the model's input (height, width).
    """
    model_ratio = size[0] / size[1]
    shapes = [shape for shape in map(_shape, _spread(paths, SAMPLE)) if shape]
    off = [(h, w) for h, w in shapes if abs(math.log(h / w / model_ratio)) > math.log(SHAPE_FACTOR)]
    if shapes and len(off) * 2 >= len(shapes):
        h, w = off[0]
        which = (
            f"the image is {w}x{h}"
            if len(paths) == 1
            else f"{len(off)} of {len(shapes)} images looked at are (e.g. {w}x{h})"
        )
        if task == "pedestrian":
            return (
                f"{which}, not tall like a pedestrian crop (the pedestrian model takes "
                f"whole-body crops about {model_ratio:.1f} times as tall as wide): for faces or "
                "portraits use the face model (--task face)"
            )
        return (
            f"{which}, far from the square face crops the face model takes: for full-body "
            "crops use --task pedestrian; to classify the faces in photos, let the detector "
            "find them (--detect-faces)"
        )
    if task == "pedestrian":
        sample = _spread(paths, FACE_SAMPLE)
        filled = sum(_face_fills(path) for path in sample)
        if filled * 2 > len(sample):
            which = "a face fills the image" if len(paths) == 1 else (
                f"a face fills {filled} of {len(sample)} images looked at"
            )  # fmt: skip
            return (
                f"{which}, where a pedestrian crop shows the whole body: for faces or "
                "portraits use the face model (--task face)"
            )
    return None


def warn_mismatch(task: str, size: Sequence[int], paths: Sequence[str]) -> None:
    """`mismatch` as one warning line on stderr, naming the flag that silences it."""
    why = mismatch(task, size, paths)
    if why:
        warn(f"the input may not suit a {task} model: {why} (--no-task-check hides this)")
