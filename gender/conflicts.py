"""Label conflicts and leaks: one image under both classes, or in both training and validation.

An image in man/ and in woman/ (a copy, a link, or a re-encoded copy) teaches the model both
answers; one in train/ and val/ makes the validation score a memory test. `same_files` finds
byte-identical files cheaply (sizes first, then a hash of the files whose sizes meet);
`near_duplicates` compares a 64-bit difference hash of the decoded images (dHash: the sign of
horizontal brightness steps on a 9x8 thumbnail), which survives re-encoding and resizing.
"""

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from gender import CLASS_NAMES, UserError
from gender.console import command, warn

# Two dHashes this many bits apart or fewer are called the same picture: 0-2 for re-encoded or
# resized copies; unrelated photos are ~32 bits apart.
NEAR_BITS = 3
# A split with fewer images of a class than this gives a validation score or a gradient that
# says little; a class ratio past RATIO makes the class weights huge (2,000 against 3: 400).
FEW_IMAGES = 10
RATIO = 20


def _digest(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def same_files(paths: Sequence[str]) -> list[list[int]]:
    """Groups (indices into `paths`) of files with identical bytes, or that are one file.

    Only files whose sizes meet are read and hashed, so a set without copies costs a stat each.
    """
    by_size = defaultdict(list)
    for i, path in enumerate(paths):
        try:
            by_size[os.stat(path).st_size].append(i)
        except OSError:
            continue  # unreadable: reported by whoever reads it
    groups = defaultdict(list)
    for members in by_size.values():
        if len(members) < 2:
            continue
        for i in members:
            try:
                groups[_digest(paths[i])].append(i)
            except OSError:
                continue
    return [members for members in groups.values() if len(members) > 1]


def difference_hash(rgb: np.ndarray) -> int:
    """A 64-bit perceptual hash of an (H, W, 3) image: near-identical pictures get near hashes."""
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def near_duplicates(hashes: Sequence[int]) -> list[tuple[int, int, int]]:
    """(i, j, bits apart) for the pairs of hashes at most NEAR_BITS apart.

    With at most 3 bits apart, two 64-bit hashes agree on at least one of their four 16-bit
    quarters, so only pairs sharing a quarter are compared (not every pair).
    """
    pairs = {}
    for quarter in range(4):
        buckets = defaultdict(list)
        for i, value in enumerate(hashes):
            buckets[(value >> (16 * quarter)) & 0xFFFF].append(i)
        for members in buckets.values():
            for a, i in enumerate(members):
                for j in members[a + 1 :]:
                    bits = (hashes[i] ^ hashes[j]).bit_count()
                    if bits <= NEAR_BITS:
                        pairs[(i, j)] = bits
    return [(i, j, bits) for (i, j), bits in sorted(pairs.items())]


def check_training_labels(parts: dict[str, "object"]) -> None:
    """Refuse a training set with a file under both classes; warn on thin or lopsided splits.

    Args:
        parts: {'train': Samples, 'val': Samples or None}.

    Raises:
        UserError: a file (or a byte-identical copy) is labelled man and woman; up to three
            are named with the count.
    """
    present = {name: samples for name, samples in parts.items() if samples is not None}
    paths = [path for samples in present.values() for path in samples.paths]
    labels = np.concatenate([samples.labels for samples in present.values()])
    both = [
        [paths[i] for i in group]
        for group in same_files(paths)
        if len({int(labels[i]) for i in group}) > 1
    ]
    if both:
        named = "; ".join(" = ".join(group[:2]) for group in both[:3])
        raise UserError(
            f"{len(both)} image(s) are in both {CLASS_NAMES[0]}/ and {CLASS_NAMES[1]}/ (the "
            f"same file or a byte-identical copy): {named}; keep each in one class "
            f"({command('dataset')} check DIR lists them all, and near-identical ones)"
        )
    for name, samples in present.items():
        counts = samples.counts()
        small, large = min(counts.values()), max(counts.values())
        if small < FEW_IMAGES:
            few = min(counts, key=counts.get)
            warn(f"{name} split: only {small} {few} image(s); its numbers will say little")
        if small and large > RATIO * small:
            warn(
                f"{name} split: {large} against {small} images ({large / small:.0f}:1, over "
                f"{RATIO}:1): the class weights give each rare image {large / small:.0f}x the "
                "weight; add images of the rare class if you can"
            )
