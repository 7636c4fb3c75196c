"""Packed data sets: sharded TFRecords and a manifest, streamed when they outgrow memory.

    SHARDS/manifest.json                 class names, counts, shard files (written last)
    SHARDS/train-00000-of-00016.tfrecord one tf.train.Example per image:
        image  bytes   the file's bytes as they were on disk (JPEG stays JPEG: no re-encoding)
        label  int64   0 = man, 1 = woman (CLASS_NAMES)
        person bytes   the person id from the --by-person regex ("" without it)
        path   bytes   the source file, relative to the packed folder's source
    SHARDS/val-*.tfrecord, SHARDS/val.txt   when there is a validation split

Training streams the records (files interleaved, a bounded shuffle buffer of encoded records,
decode and resize in tf.data threads, prefetch), so memory does not grow with the data set:
nothing decodes the whole set. Decoding goes through gender.images, the same OpenCV code that
prediction uses, so a streamed image is the array the in-memory loader would have made.
"""

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender import CLASS_NAMES, UserError
from gender.atomic import write_text
from gender.data import person_ids, warn, write_truth_table
from gender.images import BadImageError, decode_image_bytes, read_image_bytes, resize
from gender.runs import field_error, whole_number
from gender.tables import json_text

if TYPE_CHECKING:
    import tensorflow as tf

    from gender.data import Samples

MANIFEST = "manifest.json"
FORMAT = "gender-shards/1"
SHARD_BYTES = 64 * 2**20  # target shard size: big enough for sequential reads
MIN_SHARDS = 16  # at least this many per split (fewer only with fewer images): one per worker
# Records waiting in the shuffle buffer are still encoded (a 200x200 face JPEG is ~10 KB), so
# 2,048 of them cost ~20-100 MB whatever the data set size; files are shuffled and interleaved
# too, and pack shuffled the images across shards, so the buffer need not span a shard.
SHUFFLE_BUFFER = 2048


@dataclass
class PackedSplit:
    """One split of a packed folder: its shard files and counts."""

    name: str
    files: list[Path]
    shard_counts: list[int]
    class_counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(self.shard_counts)

    def counts(self) -> dict[str, int]:
        return dict(self.class_counts)


def is_packed(folder: str | Path) -> bool:
    """True for a folder that `dataset.py pack` wrote (it holds manifest.json)."""
    return (Path(folder) / MANIFEST).is_file()


def open_packed(folder: str | Path) -> dict[str, PackedSplit]:
    """Read a packed folder's manifest: {'train': PackedSplit, 'val': PackedSplit (if any)}."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{folder / MANIFEST}: not a readable manifest ({err})") from None
    check_manifest(manifest, folder / MANIFEST)
    splits = {}
    for name, entry in manifest["splits"].items():
        files = [folder / shard["file"] for shard in entry["shards"]]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise UserError(f"{folder}: shard files missing: {', '.join(missing[:3])}")
        splits[name] = PackedSplit(
            name, files, [shard["count"] for shard in entry["shards"]], entry["counts"]
        )
    return splits


def check_manifest(manifest: object, path: Path) -> None:
    """Every field open_packed reads, of its type: one line naming the file and the field. A
    shard is a plain file name in the folder (never a path that leads out of it)."""
    if not isinstance(manifest, dict):
        raise UserError(f"{path}: expected a JSON object {{...}}")
    if manifest.get("format") != FORMAT:
        raise field_error(path, "format", f"must be {FORMAT}", manifest.get("format"))
    if manifest.get("class_names") != list(CLASS_NAMES):
        raise field_error(path, "class_names", f"must be {list(CLASS_NAMES)}",
                          manifest.get("class_names"))  # fmt: skip
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or "train" not in splits or not set(splits) <= {"train", "val"}:
        raise field_error(path, "splits", "must be {train: ..., val: ...}", splits)
    for name, entry in splits.items():
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(shards, list) or not all(
            isinstance(shard, dict)
            and isinstance(shard.get("file"), str)
            and shard["file"] == Path(shard["file"]).name
            and not shard["file"].startswith(".")
            and whole_number(shard.get("count"))
            and shard["count"] >= 0
            for shard in shards
        ):
            raise field_error(path, f"splits.{name}.shards",
                              "must list {file: a name in this folder, count}", shards)  # fmt: skip
        counts = entry.get("counts")
        if not isinstance(counts, dict) or not all(
            whole_number(counts.get(c)) and counts[c] >= 0 for c in CLASS_NAMES
        ):
            raise field_error(path, f"splits.{name}.counts", "must give each class's count",
                              counts)  # fmt: skip


def pack(
    splits: Mapping[str, "Samples"],
    out: str | Path,
    person_pattern: str | None = None,
    source: str | Path | None = None,
    seed: int = 1337,
    shards: int | None = None,
) -> dict:
    """Write `splits` ({'train': Samples, 'val': Samples}) as shards in `out`; return the manifest.

    Every image is decoded once to check it (a bad file is reported and skipped, so no epoch
    stops on it later); the bytes stored are the file's own. Images are shuffled before they are
    dealt round-robin to the shards, so every shard mixes classes and people.
    """
    import tensorflow as tf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": FORMAT,
        "class_names": list(CLASS_NAMES),
        "source": str(source) if source else None,
        "person_pattern": person_pattern,
        "seed": seed,
        "splits": {},
    }
    rng = np.random.default_rng(seed)
    for name, samples in splits.items():
        persons = person_ids(samples.paths, person_pattern) if person_pattern else None
        total_bytes = sum(os.path.getsize(p) for p in samples.paths)
        count = shards or max(math.ceil(total_bytes / SHARD_BYTES), MIN_SHARDS)
        count = max(1, min(count, len(samples)))
        files = [f"{name}-{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]
        partial = [out / f".{f}.partial" for f in files]
        writers = [tf.io.TFRecordWriter(str(p)) for p in partial]
        shard_counts, class_counts = [0] * count, [0] * len(CLASS_NAMES)
        kept, written = [], 0
        try:
            for i in rng.permutation(len(samples)):
                path, label = samples.paths[i], int(samples.labels[i])
                try:
                    data = read_image_bytes(path)
                    decode_image_bytes(data, path)
                except BadImageError as err:
                    warn(f"{err} (skipped)")
                    continue
                relative = os.path.relpath(path, source) if source else path
                feature = {
                    "image": _bytes(data),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                    "person": _bytes((persons[i] if persons else "").encode()),
                    "path": _bytes(relative.encode()),
                }
                example = tf.train.Example(features=tf.train.Features(feature=feature))
                writers[written % count].write(example.SerializeToString())
                shard_counts[written % count] += 1
                class_counts[label] += 1
                kept.append(i)
                written += 1
        finally:
            for writer in writers:
                writer.close()
        for tmp, final in zip(partial, files):
            os.replace(tmp, out / final)
        manifest["splits"][name] = {
            "count": written,
            "counts": dict(zip(CLASS_NAMES, class_counts)),
            "shards": [{"file": f, "count": c} for f, c in zip(files, shard_counts)],
        }
        if name == "val":  # the validation images as a table, for gender_mAP.py on the files
            write_truth_table(out / "val.txt", samples.subset(sorted(kept)))
    write_text(out / MANIFEST, json_text(manifest))  # last: marks it complete
    return manifest


def _bytes(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def parse_record(serialized: "tf.Tensor") -> dict:
    """A serialized record -> dict of scalar tensors image (bytes), label, person, path."""
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "person": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "path": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    return tf.io.parse_single_example(serialized, spec)


def stream_dataset(
    split: PackedSplit,
    image_size: tuple[int, int],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    num_pipelines: int = 1,
    pipeline_index: int = 0,
    repeat: bool = False,
    augment: Callable | None = None,
) -> "tf.data.Dataset":
    """Batches of ((B, H, W, 3) uint8, (B, 1) float32 labels) streamed from a split's shards.

    Args:
        num_pipelines, pipeline_index: this worker's share: every num_pipelines-th shard file.
        repeat: loop for ever (multi-worker training takes a fixed number of steps per epoch).
        augment: fn(uint8 batch) -> float batch, applied per batch after decoding.
    """
    import tensorflow as tf

    height, width = image_size
    files = [str(f) for f in split.files]
    if num_pipelines > len(files):
        raise UserError(
            f"{split.name}: {len(files)} shard files for {num_pipelines} workers; "
            "pack again with --shards N (N at least the number of workers)"
        )
    ds = tf.data.Dataset.from_tensor_slices(files)
    if num_pipelines > 1:
        ds = ds.shard(num_pipelines, pipeline_index)  # by file: each worker reads its own shards
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(4, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle,
    )
    if shuffle:
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)

    def decode(data):  # OpenCV, as the in-memory loader and prediction decode
        return resize(decode_image_bytes(bytes(data)), (height, width))

    def load(serialized):
        record = parse_record(serialized)
        image = tf.numpy_function(decode, [record["image"]], tf.uint8, stateful=False)
        image.set_shape((height, width, 3))
        return image, tf.cast(tf.reshape(record["label"], (1,)), tf.float32)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def read_records(split: PackedSplit) -> Iterator[dict]:
    """Every record of a split as dicts of Python values (for tests and checks; small sets)."""
    import tensorflow as tf

    for serialized in tf.data.TFRecordDataset([str(f) for f in split.files]):
        record = parse_record(serialized)
        yield {
            "image": record["image"].numpy(),
            "label": int(record["label"]),
            "person": record["person"].numpy().decode(),
            "path": record["path"].numpy().decode(),
        }
