"""Find man/woman images on disk, split them, decode them once and feed them to Keras.

Folder layouts read (class order is always CLASS_NAMES, whatever the folder order):
    DIR/{man,woman}/...                      one set, split into train/val by the trainer
    DIR/{train,val}/{man,woman}/...          an existing split (a DIR/all beside it is then ignored)
    DIR/all/{man,woman}/...                  a project folder's all/ without train/val: one set
A ground-truth table (`path<TAB>label` lines, as `dataset.py` and the trainer write) is read too.

Images are decoded with OpenCV once, up front, into one uint8 array, instead of with
`image_dataset_from_directory`: that decoder stops the whole run at the first corrupt file (maybe
in epoch 3), while here a bad file is reported by name and skipped, and no epoch decodes a JPEG
again.
"""

import json
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender import CLASS_NAMES, UserError
from gender.atomic import write_text
from gender.console import warn
from gender.flags import DEFAULT_PERSON_PATTERN, compile_id_regex
from gender.images import BadImageError, is_image_file, load_image

if TYPE_CHECKING:
    import tensorflow as tf

# Decoded images and cached features stay in RAM while their total fits a budget; an array
# that would pass it goes to a disk-backed file instead (see new_array). The budget is
# GENDER_MEMORY_BUDGET_MB (default 2048), read at each call; a caller may pin it here instead.
DEFAULT_MEMORY_BUDGET_MB = 2048
MEMORY_BUDGET_BYTES: int | None = None  # None: the environment variable decides
_ram_bytes = [0]  # bytes of the new_array arrays now alive in RAM
TRUTH_HEADER = f"# path<TAB>label  (label 0 = {CLASS_NAMES[0]}, 1 = {CLASS_NAMES[1]})\n"


@dataclass
class Samples:
    """Image paths and their labels (0 = man, 1 = woman)."""

    paths: list[str]
    labels: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: Sequence[int] | np.ndarray) -> "Samples":
        return Samples([self.paths[i] for i in index], self.labels[index])

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(CLASS_NAMES)}


def _has_classes(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in CLASS_NAMES)


def check_data_folder(root: str | Path) -> Path:
    """`root` as a Path; UserError when it is missing or not a folder."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"{root}: no such file or folder")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (expected man/ and woman/ inside)")
    return root


def find_splits(root: str | Path) -> dict[str, Path]:
    """Resolve a data folder into {'train': dir, 'val': dir} or {'all': dir}, each with man/woman.

    Raises:
        UserError: the path is missing or holds no man/woman folders.
    """
    root = check_data_folder(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        splits = {"train": root / "train", "val": root / "val"}
    elif _has_classes(root):
        splits = {"all": root}
    elif (root / "all").is_dir():
        splits = {"all": root / "all"}
    else:
        raise UserError(
            f"{root}: expected folders {CLASS_NAMES[0]}/ and {CLASS_NAMES[1]}/ "
            "(or train/ and val/ each holding them)"
        )
    for folder in splits.values():
        for name in CLASS_NAMES:
            if not (folder / name).is_dir():
                raise UserError(f"{folder}: missing class folder {name}/")
        first, second = (os.path.realpath(folder / name) for name in CLASS_NAMES)
        if (
            first == second
            or Path(second).is_relative_to(first)
            or Path(first).is_relative_to(second)
        ):
            raise UserError(
                f"{folder}: {CLASS_NAMES[0]}/ ({first}) and {CLASS_NAMES[1]}/ ({second}) are the "
                "same folder or one holds the other: every image would have both labels"
            )
    return splits


def walk_images(folder: str | Path, report_other: bool = True) -> Iterator[Path]:
    """Yield the image files below `folder`, sorted by path, reporting what is left out.

    The rules, the same for every command: names starting with '.' (files and folders, e.g.
    .thumbnails/) are skipped silently; symbolic links to files and folders are followed (a
    folder reached twice, e.g. through a link loop, is read once); a file without an image
    extension (unless report_other=False), or that is not a regular file (a named pipe, a
    socket, a broken link), is reported and skipped, and is never opened.
    """
    seen = set()

    def walk(directory):
        real = os.path.realpath(directory)
        if real in seen:
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as err:
            warn(f"{directory}: folder cannot be read ({err.strerror}) (skipped)")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:  # both follow links; a link that loops (to itself, or a ring) raises ELOOP
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except OSError as err:
                warn(f"{path}: cannot be followed ({err.strerror}) (skipped)")
                continue
            if is_dir:
                yield from walk(path)
            elif not is_image_file(path):
                if report_other:
                    warn(f"{path}: not an image file name (skipped)")
            elif not is_file:
                warn(f"{path}: not a regular file (a named pipe, socket or broken link) (skipped)")
            else:
                yield path

    yield from walk(Path(folder))


def list_folder(folder: str | Path) -> Samples:
    """List the images under folder/man and folder/woman (see walk_images), in a stable order.

    An empty class is an error.
    """
    folder = check_data_folder(folder)
    paths, labels = [], []
    for label, name in enumerate(CLASS_NAMES):
        class_dir = folder / name
        found = 0
        for path in walk_images(class_dir):
            paths.append(str(path))
            labels.append(label)
            found += 1
        if found == 0:
            raise UserError(f"{class_dir}: no images in this class folder")
    return Samples(paths, np.asarray(labels, dtype=np.int64))


# Characters that end a line for some reader (str.splitlines, editors, browsers): a name holding
# one is written quoted (see format_truth_line), so every reader sees one row per image.
_LINE_BREAKS = set("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def format_truth_line(image: str, label: int) -> str:
    """One table row, `path<TAB>label\\n`.

    A plain name is written as it is (bytes that are not UTF-8 as themselves); a name that a
    reader could split or skip (a line break of any kind, a tab or other control character, a
    leading '#' or '"', a byte-order mark, spaces at its ends) is written as a JSON string,
    "like\\nthis", which `parse_truth_line` reads back to the same name.
    """
    if (
        any(ch in _LINE_BREAKS or ch < " " or ch == "\x7f" for ch in image)
        or image.startswith(("#", '"', "\ufeff"))
        or image != image.strip()
    ):
        image = json.dumps(image)  # ASCII with \\u escapes: no break, no tab survives in it
    return f"{image}\t{int(label)}\n"


def parse_truth_line(line: str) -> tuple[str, int]:
    """(path, label) of one row written by `format_truth_line` (or by hand: `path<TAB>0|1`).

    Raises:
        ValueError: not a row.
    """
    if line.startswith('"'):
        image, end = json.JSONDecoder().raw_decode(line)
        rest = line[end:]
        if not isinstance(image, str) or not rest.startswith("\t"):
            raise ValueError
        label = rest[1:]
    else:
        image, label = line.rsplit("\t", 1)
    label = int(label)
    if label not in (0, 1) or not image:
        raise ValueError
    return image, label


def read_truth_table(path: str | Path) -> Samples:
    """Read a ground-truth table written by `dataset.py` or the trainer (`path<TAB>label`).

    Rows end at '\\n' only (a CRLF file is read too); a byte-order mark is skipped. A path
    listed twice, with one label or with both, is refused: it would count twice in every figure,
    or be right and wrong at once.
    """
    path = Path(path)
    paths, labels = [], []
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")  # names as written
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror})") from None
    first_row: dict[str, tuple[int, int]] = {}
    for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip() or line.startswith("#"):
            continue
        try:
            image, label = parse_truth_line(line)
        except ValueError:
            raise UserError(
                f"{path}:{number}: expected 'path<TAB>0|1', got {line[:60]!r}"
            ) from None
        image = Path(image)
        image = str(image if image.is_absolute() else path.parent / image)
        key = os.path.abspath(image)  # "a/./b.jpg" is "a/b.jpg"
        if key in first_row:
            before, label_before = first_row[key]
            what = "listed again" if label == label_before else "listed with both labels"
            raise UserError(
                f"{path}:{number}: {image} is {what} (line {before} has it as "
                f"{CLASS_NAMES[label_before]}); list each image once"
            )
        first_row[key] = (number, label)
        paths.append(image)
        labels.append(label)
    if not paths:
        raise UserError(f"{path}: the ground-truth table lists no images")
    return Samples(paths, np.asarray(labels, dtype=np.int64))


def table_path(image: str | Path, base: str | Path | None) -> str:
    """How a table lists `image`: relative to `base` when below it, else absolute. Links are
    not followed (os.path.abspath, not resolve), so a table names the file as its folder does."""
    image = os.path.abspath(image)
    if base is not None:
        base = os.path.abspath(base)
        if Path(image).is_relative_to(base):
            return os.path.relpath(image, base)
    return image


def write_truth_table(
    path: str | Path, samples: Samples, relative_to: str | Path | None = None
) -> None:
    """Write samples as a `path<TAB>label` table, atomically (paths relative to `relative_to`)."""
    lines = [TRUTH_HEADER]
    for image, label in zip(samples.paths, samples.labels):
        lines.append(format_truth_line(table_path(image, relative_to), label))
    write_text(path, "".join(lines))


def class_folders(source: str | Path) -> list[Path]:
    """The man/ and woman/ folders images are read from ([] for a ground-truth table)."""
    source = Path(source)
    if source.is_file():
        return []
    return [folder / name for folder in find_splits(source).values() for name in CLASS_NAMES]


def load_samples(source: str | Path) -> dict[str, Samples]:
    """List a data folder or a ground-truth table: {'train': .., 'val': ..} or {'all': ..}."""
    source = Path(source)
    if source.is_file() and source.suffix == ".txt":
        return {"all": read_truth_table(source)}
    return {split: list_folder(folder) for split, folder in find_splits(source).items()}


def train_val_samples(
    source: str | Path, val_fraction: float, seed: int, person_pattern: str | None = None
) -> tuple[Samples, Samples | None]:
    """A data folder's (train, val): its own train/ and val/ when it has them, else its images
    split by `split_samples` (val_fraction 0: all train, val None)."""
    splits = load_samples(source)
    if "train" in splits:
        return splits["train"], splits["val"]
    if val_fraction == 0:
        return splits["all"], None
    return split_samples(splits["all"], val_fraction, seed, person_pattern)


def person_ids(paths: Sequence[str], pattern: str = DEFAULT_PERSON_PATTERN) -> list[str]:
    """The person id of each file, from the first group of `pattern` matched on the file name.

    A name that does not match is its own person, so an unmatched file can never leak across.
    """
    try:
        regex = compile_id_regex(pattern)
    except ValueError as err:
        raise UserError(f"person id regex {err}") from None
    ids = []
    for path in paths:
        match = regex.search(Path(path).name)
        ids.append(match.group(1) if match else f"file:{path}")
    return ids


def split_samples(
    samples: Samples, val_fraction: float, seed: int, person_pattern: str | None = None
) -> tuple[Samples, Samples]:
    """Split into (train, val), stratified by class; by person when `person_pattern` is given.

    With a pattern, all images of one person id land on the same side, whatever class folder
    they are in, so validation measures people the model never saw (the seeds' lesson: a seen
    person is easy, a new one is not). An id found under both man/ and woman/ (two source data
    sets numbering their people alike, or a labelling slip) is still kept on one side.
    """
    if not 0 < val_fraction < 1:
        raise UserError(f"--val-split {val_fraction}: expected a fraction between 0 and 1")
    groups = (
        person_ids(samples.paths, person_pattern)
        if person_pattern
        else [f"file:{p}" for p in samples.paths]
    )
    members: dict[str, list[int]] = {}
    for i, key in enumerate(groups):
        members.setdefault(key, []).append(i)
    keys = sorted(members)
    np.random.default_rng(seed).shuffle(keys)
    target = val_fraction * np.bincount(samples.labels, minlength=len(CLASS_NAMES))
    taken = np.zeros(len(CLASS_NAMES))
    val_index = []
    for key in keys:
        group = np.bincount(samples.labels[members[key]], minlength=len(CLASS_NAMES))
        # Take a person while every class they bring still needs validation images.
        if all(taken[c] < target[c] for c in np.flatnonzero(group)):
            val_index.extend(members[key])
            taken += group
    val_set = set(val_index)
    train_index = [i for i in range(len(samples)) if i not in val_set]
    train, val = samples.subset(train_index), samples.subset(sorted(val_set))
    for name, part in (("training", train), ("validation", val)):
        for class_name, count in part.counts().items():
            if count == 0:
                raise UserError(
                    f"the {name} split has no {class_name} images; use more data "
                    "or another --val-split"
                )
    return train, val


def concat_samples(parts: Sequence[Samples]) -> Samples:
    """One Samples holding every part, in order."""
    return Samples(
        [path for part in parts for path in part.paths],
        np.concatenate([part.labels for part in parts]).astype(np.int64),
    )


def memory_budget_bytes() -> int:
    """The RAM budget for decoded arrays: MEMORY_BUDGET_BYTES if set, else the environment's."""
    if MEMORY_BUDGET_BYTES is not None:
        return MEMORY_BUDGET_BYTES
    text = os.environ.get("GENDER_MEMORY_BUDGET_MB", str(DEFAULT_MEMORY_BUDGET_MB))
    try:
        return int(float(text) * 2**20)
    except ValueError:
        raise UserError(f"GENDER_MEMORY_BUDGET_MB={text!r}: expected a number of MB") from None


def new_array(
    shape: tuple[int, ...], dtype: np.typing.DTypeLike, cache_dir: str | Path | None = None
) -> np.ndarray:
    """An uninitialised array: in RAM if it fits what is left of the budget, else a file.

    The budget is for all the arrays alive at once (train images, val images, cached features),
    so their sum, not each alone, stays under it. Each file-backed array gets its own temporary
    file in `cache_dir`, so two arrays never share one; without `cache_dir`, RAM it is.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if _ram_bytes[0] + nbytes <= memory_budget_bytes() or cache_dir is None:
        array = np.empty(shape, dtype)
        _ram_bytes[0] += nbytes
        weakref.finalize(array, _release_ram, nbytes)  # views keep `array` alive until dropped
        return array
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=cache_dir, suffix=".npy")
    os.close(fd)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _release_ram(nbytes: int) -> None:
    _ram_bytes[0] -= nbytes


def storage(array: np.ndarray) -> str:
    """Where an array from new_array lives and its size, e.g. '520 MB in RAM'."""
    where = "in a file" if isinstance(array, np.memmap) else "in RAM"
    return f"{array.nbytes / 2**20:,.0f} MB {where}"


def decode_images(
    samples: Samples,
    size: Sequence[int],
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    skip_bad: bool = True,
    report_skipped: bool = True,
) -> tuple[np.ndarray, Samples]:
    """Decode and resize every image once, skipping (and reporting) the bad ones.

    With skip_bad=False the first bad image raises its BadImageError instead; with
    report_skipped=False a skipped image is not reported again (the int8 export's calibration
    reads training images that training has already reported).

    Returns:
        (images, kept): images is (N, H, W, 3) uint8, in RAM when it fits the memory budget,
        else a np.memmap file in `cache_dir`; kept is the Samples that decoded.
    """
    height, width = size
    workers = workers or min(8, os.cpu_count() or 2)

    def load(path):
        try:
            return load_image(path, size)
        except BadImageError as err:
            return err

    store = new_array((len(samples), height, width, 3), np.uint8, cache_dir)
    kept = []
    # OpenCV releases the GIL while decoding and resizing, so threads use every core.
    with ThreadPoolExecutor(workers) as pool:
        for i, result in enumerate(pool.map(load, samples.paths, chunksize=16)):
            if isinstance(result, BadImageError):
                if not skip_bad:
                    raise result
                if report_skipped:
                    warn(f"{result} (skipped)")
                continue
            store[len(kept)] = result
            kept.append(i)
    if not kept:
        raise UserError("no readable images")
    images = store[: len(kept)]
    return images, samples.subset(kept)


def make_dataset(
    inputs: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    augment: Callable | None = None,
    views: bool = False,
    sample_weights: np.ndarray | None = None,
) -> "tf.data.Dataset":
    """A tf.data pipeline of (inputs, float labels) batches from decoded arrays, or of
    (inputs, labels, weights) batches with `sample_weights` (one per image, as model.fit takes).

    Batches are sliced from the array in Python (cheap: one memcpy per batch) so the same code
    serves an in-RAM array and a disk-backed memmap; augmentation runs in tf.data threads.

    Args:
        inputs: (N, ...) images or cached features; with views=True, (V, N, ...) and each sample
            of each batch comes from one of its V versions at random.
    """
    import tensorflow as tf

    n = inputs.shape[1] if views else len(inputs)
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, np.float32).reshape(-1, 1)
    weighted = sample_weights is not None
    if weighted:
        sample_weights = np.asarray(sample_weights, np.float32).reshape(-1)

    def batches():
        order = rng.permutation(n) if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            index = np.sort(order[start : start + batch_size])  # sorted: sequential memmap reads
            if views:
                batch = inputs[rng.integers(0, inputs.shape[0], len(index)), index], labels[index]
            else:
                batch = inputs[index], labels[index]
            yield (*batch, sample_weights[index]) if weighted else batch

    shape = inputs.shape[2:] if views else inputs.shape[1:]
    signature = (
        tf.TensorSpec((None, *shape), tf.as_dtype(inputs.dtype)),
        tf.TensorSpec((None, 1), tf.float32),
    )
    if weighted:
        signature += (tf.TensorSpec((None,), tf.float32),)
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
    if augment is not None:
        ds = ds.map(lambda x, *rest: (augment(x), *rest), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def expand_inputs(inputs: Sequence[str | Path]) -> list[str]:
    """Files as given; folders as every image file below them, sorted (see walk_images)."""
    paths = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [str(p) for p in walk_images(path, report_other=False)]
            if not found:
                raise UserError(f"{path}: no image files in this folder")
            paths += found
        elif path.is_file():
            paths.append(str(path))
        elif path.is_symlink() and not path.exists():
            raise UserError(f"{path}: a symbolic link that loops or leads nowhere")
        elif path.exists():  # never opened: a pipe would wait for a writer for ever
            raise UserError(f"{path}: not a regular file (a named pipe, socket or device)")
        else:
            raise UserError(f"{path}: no such file or folder")
    return paths
