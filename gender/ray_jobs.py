"""Predicting a whole collection on Ray: `--ray [ADDRESS]` of the predict and evaluate commands.

Ray is an optional extra (`pip install ".[ray]"`): nothing imports this module, or Ray, unless
--ray (or --ray-workers, `gender.ray_train`) is given.

How a collection flows (docs/scaling.md, "Ray"):
    this process lists SOURCE (a folder, a ground-truth table or a storage URI pyarrow reads)
    -> Ray Data blocks of paths -> a pool of actors, one per CPU of the cluster, each holding
    one Predictor (int8 LiteRT, as many interpreter threads as the actor has CPUs) that reads,
    decodes and classifies its block -> the rows come back here, which writes them to OUT as
    they arrive (`RowFile`: CSV appended a block at a time, Parquet committed at the end).
The answers are the Predictor's own, so they are the local command's; only the row order
differs (the order blocks finish in). An actor that dies is restarted by Ray and its block
runs again: rows reach OUT only from finished blocks, so none is lost or written twice.
"""

import argparse
import contextlib
import csv
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from gender import CLASS_NAMES, UserError
from gender.console import Progress, command, filtered_stderr, quiet, warn
from gender.data import Samples
from gender.output import IMAGE_COLUMNS, image_rows
from gender.predictor import CHUNK

if TYPE_CHECKING:
    from gender.predictor import FolderResult, Predictor
from gender import interrupt
from gender.atomic import check_outputs, write_text
from gender.data import expand_inputs, read_truth_table
from gender.data import load_samples as load_local
from gender.flags import resolve_band
from gender.images import (
    BadImageError,
    decode_image_bytes,
    is_image_file,
    parse_image_size,
    read_image_bytes,
    resize,
)
from gender.predictor import FolderResult, Predictor
from gender.tables import FORMULA_STARTS, safe_cell

# CPUs each prediction actor reserves: one actor per CPU keeps every core busy with one
# single-threaded interpreter, which beats fewer actors with several threads each on small models
# (no thread hand-offs inside a batch of 128x128 crops).
ACTOR_CPUS = 1
# Rows per block: each block is one task of one actor, the unit Ray retries after a failure and
# the step OUT grows by. Enough blocks for every actor to get about BLOCKS_PER_ACTOR of them
# (the last ones finish close together), at most MAX_BLOCK_ROWS (a retry redoes little).
BLOCKS_PER_ACTOR = 4
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 16, 1024
PARQUET_ROW_GROUP = 65536  # rows buffered per Parquet row group
# TEST HOOK (tests/test_ray.py): a file path; the first actor to create it ends its process after
# classifying its block, before returning it, so the block must be run again elsewhere.
CRASH_HOOK = "GENDER_TEST_RAY_CRASH_ONCE"
RAY_CHATTER = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] ")


def import_ray() -> ModuleType:
    """The ray module, or a one-line error saying how to install the extra."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra installs both; a bare `ray` lacks Ray Data)
    except ImportError as err:
        raise UserError(
            f"--ray needs the ray extra ({err.name or 'ray'} is not installed): "
            'pip install "gender-classifier[ray]", or pip install -r requirements.txt'
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(
    address: str | None, verbose: bool = False, log_workers: bool = False
) -> Iterator[ModuleType]:
    """Ray for one command: join `address` (or RAY_ADDRESS), else start a local Ray on this
    machine's CPUs (GENDER_RAY_CPUS of them, when set) and stop it at the end.

    A Ray the caller has already started in this process (a notebook, the tests) is used as it
    is and left running. Ray's own log lines and the actors' output stay hidden unless
    `verbose` (`log_workers`: the actors' output is shown anyway, e.g. training's epoch lines).
    """
    ray = import_ray()
    quiet_ray_data(verbose)
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    from ray.job_config import JobConfig

    # The actors import this toolkit from where this process found it (a checkout, whatever the
    # current folder; an installed copy is found anyway), at the same path on every node. A
    # code search path costs nothing; a runtime_env PYTHONPATH delayed the first block by ~6 s.
    found = str(Path(__file__).resolve().parent.parent)
    options = {
        "log_to_driver": verbose or log_workers,
        "logging_level": logging.INFO if verbose else logging.ERROR,
        "job_config": JobConfig(code_search_path=[found]),
    }
    cpus = os.environ.get("GENDER_RAY_CPUS")
    # the C++ core's line saying it read RAY_BACKEND_LOG_LEVEL comes before that level applies
    quiet = contextlib.nullcontext() if verbose else filtered_stderr(is_ray_chatter)
    try:
        with quiet:
            if address:
                ray.init(address=address, **options)
            else:
                # "local": a new Ray, even where `ray start` left one's address behind here
                ray.init(
                    address="local",
                    num_cpus=int(cpus) if cpus else None,
                    include_dashboard=False,
                    **options,
                )
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot start or join {where} ({reason})") from None
    _rearm_signals()
    try:
        yield ray
    finally:
        ray.shutdown()


def is_ray_chatter(line: str) -> bool:
    """A line Ray's C++ core wrote for itself: `[2026-12-07 20:47:00,156 I 11024 11024] ...`."""
    return bool(RAY_CHATTER.match(line))


def _rearm_signals() -> None:
    """Ctrl-C and SIGTERM stop the command through `gender.interrupt` again (Ray's start-up
    may install its own handlers)."""
    interrupt.rearm()


def quiet_ray_data(verbose: bool) -> None:
    """Ray Data's progress bars and execution notes off (the toolkit's own count is shown)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose
    context.print_on_execution_start = verbose
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.ERROR)


def is_uri(source: str | Path) -> bool:
    """Whether `source` names storage through a URI (s3://, gs://, hdfs://, file://)."""
    return "://" in str(source)


def list_images(sources: Sequence[str]) -> list[str]:
    """The images of predict's sources: a folder (every image below it, sorted), a ground-truth
    table (.txt), an image file, or a storage URI (every image below it)."""
    paths = []
    for source in sources:
        if is_uri(source):
            paths += [path for path, _ in _list_uri(source)]
        elif Path(source).is_file() and Path(source).suffix == ".txt":
            paths += read_truth_table(source).paths
        else:
            paths += expand_inputs([source])
    return paths


def load_samples(source: str) -> dict[str, Samples]:
    """evaluate's DATASET, a storage URI too: `gender.data.load_samples` for local sources; a
    URI's images are labelled by the man/ and woman/ folders below it (or below its val/)."""
    if not is_uri(source):
        return load_local(source)
    splits: dict[str, tuple[list, list]] = {}
    for path, parts in _list_uri(source):
        if len(parts) > 1 and parts[0] in CLASS_NAMES:
            split, name = "all", parts[0]
        elif len(parts) > 2 and parts[0] == "val" and parts[1] in CLASS_NAMES:
            split, name = "val", parts[1]
        else:
            continue
        paths, labels = splits.setdefault(split, ([], []))
        paths.append(path)
        labels.append(CLASS_NAMES.index(name))
    if not splits:
        raise UserError(f"{source}: no images under man/ and woman/ (or val/man, val/woman)")
    split = "val" if "val" in splits else "all"
    paths, labels = splits[split]
    return {split: Samples(paths, np.asarray(labels, np.int64))}


def _list_uri(uri: str) -> list[tuple[str, list[str]]]:
    """(URI of each image below `uri`, its path parts below `uri`), sorted by URI."""
    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(uri)
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    except FileNotFoundError:
        raise UserError(f"{uri}: no such folder") from None
    except (OSError, ValueError) as err:  # pyarrow.ArrowInvalid is a ValueError
        raise UserError(f"{uri}: cannot be listed ({str(err).splitlines()[0]})") from None
    # the files again as URIs, so that every actor, on any machine, opens them the same way
    base = uri[: uri.rfind(root.rstrip("/"))] if root.rstrip("/") else uri.split("://")[0] + "://"
    top = root.rstrip("/") + "/"
    found = [
        (base + info.path, info.path[len(top) :].split("/"))
        for info in infos
        if info.type == pafs.FileType.File and is_image_file(info.path)
    ]
    if not found:
        raise UserError(f"{uri}: no image files there")
    return sorted(found)


class Classifier:
    """A Ray actor's model: reads, decodes and classifies a block of image paths.

    Built once per actor (one Predictor, loaded from the same weights as the command's), then
    called on each block: {"path": (N,)} -> {"path", "p_woman" (nan if unreadable), "error"}.
    """

    def __init__(
        self, weights: str, backend: str, threshold: float, batch_size: int, crash: str = ""
    ) -> None:
        import ray

        quiet()  # a process of the command: as quiet as the command (before TensorFlow loads)
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", ACTOR_CPUS)
        self.threads = max(1, int(cpus))
        self.predictor = Predictor.load(weights, backend=backend, threads=self.threads)
        # the int8 backend re-checks answers near the threshold: the command's threshold
        self.predictor.set_threshold(threshold)
        self.batch_size, self.crash = batch_size, crash
        self.filesystems: dict[str, object] = {}

    def read(self, path: str) -> bytes:
        """An image's bytes: a local file as the local command reads it, a URI through pyarrow."""
        if not is_uri(path):
            return read_image_bytes(path)
        import pyarrow.fs as pafs

        scheme = path.split("://")[0]
        if scheme not in self.filesystems:
            self.filesystems[scheme] = pafs.FileSystem.from_uri(path)[0]
        _, inner = pafs.FileSystem.from_uri(path)
        with self.filesystems[scheme].open_input_stream(inner) as stream:
            return stream.read()

    def load(self, path: str) -> np.ndarray | str:
        """The image resized for the model, or the line saying why it cannot be read."""
        try:
            return resize(decode_image_bytes(self.read(path), path), self.predictor.size)
        except BadImageError as err:
            return str(err)
        except OSError as err:
            return f"{path}: cannot be read ({err.strerror or str(err).splitlines()[0]})"

    def __call__(self, block: dict) -> dict:
        paths = [str(path) for path in block["path"]]
        if self.threads > 1:
            with ThreadPoolExecutor(self.threads) as pool:  # OpenCV releases the GIL
                loaded = list(pool.map(self.load, paths))
        else:
            loaded = [self.load(path) for path in paths]
        good = np.array([not isinstance(item, str) for item in loaded], bool)
        p_woman = np.full(len(paths), np.nan)
        if good.any():
            images = np.stack([item for item in loaded if not isinstance(item, str)])
            p_woman[good] = self.predictor.classify(images, self.batch_size)
        if self.crash:
            _crash_once(self.crash)
        errors = [item if isinstance(item, str) else "" for item in loaded]
        return {"path": np.array(paths, object), "p_woman": p_woman, "error": np.array(errors)}


def _crash_once(flag: str) -> None:
    """TEST HOOK: end this actor's process the first time any actor gets here (CRASH_HOOK)."""
    try:
        os.close(os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


def block_rows(images: int, actors: int) -> int:
    """Rows per Ray Data block (see BLOCKS_PER_ACTOR)."""
    rows = -(-images // (actors * BLOCKS_PER_ACTOR))
    return max(MIN_BLOCK_ROWS, min(MAX_BLOCK_ROWS, rows))


def classify_blocks(
    ray: ModuleType, paths: Sequence[str], predictor: "Predictor", batch_size: int
) -> Iterator[tuple[list[str], np.ndarray, list[str]]]:
    """(paths, P(woman), errors) of each block as the cluster finishes it, in no fixed order.

    Args:
        ray: the module, inside `ray_session`.
        predictor: the command's own Predictor: its weights file, backend and threshold are
            what every actor loads (the weights' path must be readable on every node).
    """
    import pyarrow as pa

    actors = max(1, int(ray.cluster_resources().get("CPU", ACTOR_CPUS)) // ACTOR_CPUS)
    rows = block_rows(len(paths), actors)
    table = pa.table({"path": pa.array(list(paths), pa.string())})
    blocks = [table.slice(start, rows) for start in range(0, len(paths), rows)]
    dataset = ray.data.from_arrow(blocks).map_batches(
        Classifier,
        fn_constructor_args=(
            str(Path(predictor.weights).absolute()),
            predictor.backend,
            predictor.threshold,
            batch_size,
            os.environ.get(CRASH_HOOK, ""),
        ),
        batch_size=rows,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(actors, len(blocks))),
        num_cpus=ACTOR_CPUS,
        # Ray Data's actor pools restart a dead actor and run the blocks it held again
        # (max_restarts and max_task_retries -1): the no-lost-row promise rests on that default
    )
    try:
        for block in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            paths, errors = [str(p) for p in block["path"]], [str(e) for e in block["error"]]
            yield paths, block["p_woman"], errors
    except ray.exceptions.RayError as err:
        # e.g. an actor that cannot load the weights: a node without them at this path
        raise UserError(f"the job on Ray failed: {ray_reason(err)}") from None


def ray_reason(err: Exception) -> str:
    """The line of a Ray error's text that says what went wrong: the toolkit's own error when an
    actor raised one, else the first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    ours = [line.split("UserError: ", 1)[1] for line in lines if "UserError: " in line]
    return (ours[-1] if ours else lines[0] if lines else type(err).__name__)[:300]


class RowFile:
    """OUT of a prediction on Ray: the rows already there, and new rows added as they come.

    CSV (any name but .parquet): rows are appended a block at a time, each block whole (a
    signal waits for the write to end), so the file is whole after Ctrl-C, and after a crash
    all but a last partial line, which the next run drops. Parquet (.parquet): a file cannot
    grow in place, so the rows are written to a temporary beside it and renamed over OUT at
    the end, or on Ctrl-C or an error (they are right rows either way).
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.parquet = self.out.suffix.lower() == ".parquet"
        self.done: set[str] = set()
        self._open_parquet() if self.parquet else self._open_csv()

    def _open_csv(self) -> None:
        if self.out.is_file() and self.out.stat().st_size:
            with open(self.out, "rb+") as handle:  # a crash's partial last line is dropped
                data = handle.read()
                if not data.endswith(b"\n"):
                    handle.truncate(data.rfind(b"\n") + 1)
            with open(self.out, newline="", encoding="utf-8", errors="surrogateescape") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header != IMAGE_COLUMNS:
                    raise UserError(
                        f"{self.out}: not a prediction CSV of this command (columns {header}, "
                        f"expected {IMAGE_COLUMNS}); give another --csv"
                    )
                self.done = {_unsafe_cell(row[0]) for row in reader if row}
        else:
            write_text(self.out, ",".join(IMAGE_COLUMNS) + "\r\n")  # csv.writer's line ending
        self._file = open(  # noqa: SIM115  closed by close()
            self.out, "a", newline="", encoding="utf-8", errors="surrogateescape"
        )
        self._writer = csv.writer(self._file)

    def _open_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._schema = pa.schema(
            [("path", pa.string()), ("label", pa.string()),
             ("probability", pa.float64()), ("p_woman", pa.float64())]
        )  # fmt: skip
        self._tmp = self.out.with_name(f".{self.out.name}.partial")
        existing = None
        if self.out.is_file():
            try:
                existing = pq.read_table(self.out)
            except (OSError, pa.ArrowException) as err:
                raise UserError(f"{self.out}: not a readable Parquet file ({err})") from None
            if existing.column_names != IMAGE_COLUMNS:
                raise UserError(
                    f"{self.out}: not a prediction table of this command (columns "
                    f"{existing.column_names}, expected {IMAGE_COLUMNS}); give another --csv"
                )
            self.done = set(existing["path"].to_pylist())
        self._writer = pq.ParquetWriter(self._tmp, self._schema)
        if existing is not None:
            self._writer.write_table(existing.cast(self._schema))
        self._buffer: list[list] = []

    def write(self, rows: list[list]) -> None:
        """Add rows ([path, label, probability, p_woman] as `image_rows` makes them)."""
        if not rows:
            return
        if self.parquet:
            self._buffer += rows
            if len(self._buffer) >= PARQUET_ROW_GROUP:
                self._flush_parquet()
            return
        with interrupt.deferred():
            self._writer.writerows([safe_cell(cell) for cell in row] for row in rows)
            self._file.flush()

    def _flush_parquet(self) -> None:
        import pyarrow as pa

        if self._buffer:
            columns = list(zip(*self._buffer))
            self._writer.write_table(
                pa.table(
                    [list(columns[0]), list(columns[1]),
                     [float(v) for v in columns[2]], [float(v) for v in columns[3]]],
                    schema=self._schema,
                )
            )  # fmt: skip
            self._buffer = []

    def close(self) -> None:
        """Finish OUT: the CSV is closed; the Parquet file is completed and renamed into place."""
        with interrupt.deferred():
            if not self.parquet:
                self._file.close()
                return
            self._flush_parquet()
            self._writer.close()
            os.replace(self._tmp, self.out)


def _unsafe_cell(text: str) -> str:
    """A path as it was before `safe_cell` marked it (a leading ' before a formula start)."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS):
        return text[1:]
    return text


def check_ray_flags(args: argparse.Namespace) -> None:
    """What --ray does not do: pictures of one image, face detection, stdout."""
    if getattr(args, "annotate", None) or getattr(args, "explain", None):
        raise UserError("--annotate and --explain draw one image; leave out --ray")
    if getattr(args, "detect_faces", False):
        raise UserError(
            "--ray classifies each image whole (face crops, pedestrians): leave out "
            f"--detect-faces, or crop first with {command('dataset')} crop"
        )


def predict_collection(inputs: Sequence[str], weights: str | None, args: argparse.Namespace) -> int:
    """gender_single_predict.py SOURCE --ray [ADDRESS] --csv OUT: every image of SOURCE
    classified on Ray, its row added to OUT; images already in OUT are skipped.

    Returns:
        The exit status: 0, or 1 when some images were unreadable (each said on stderr).
    """
    check_ray_flags(args)
    if not args.csv:
        raise UserError("--ray writes its rows to a file: give --csv OUT (.csv, or .parquet)")
    paths = list_images(inputs)
    local = [item for item in inputs if not is_uri(item)]
    check_outputs([(args.csv, False)], [*local, *(p for p in paths if not is_uri(p))])
    predictor = Predictor.load(
        weights,
        task=args.task,
        backend=args.backend,
        image_size=parse_image_size(args.image_size) if args.image_size else None,
    )
    if args.threshold is not None:
        predictor.set_threshold(args.threshold)
    band = resolve_band(args.uncertain, predictor.info.uncertain_band, predictor.threshold)
    out = RowFile(args.csv)
    todo = [path for path in dict.fromkeys(paths) if path not in out.done]
    print(f"predicting with {predictor.describe()}, on Ray", file=sys.stderr)
    if out.done:
        print(
            f"{args.csv}: {len(out.done)} images already answered, {len(todo)} to do",
            file=sys.stderr,
        )
    interrupt.keep(
        f"{args.csv} holds every row written so far; the same command again does the rest"
    )
    written = skipped = unsure = 0
    try:
        if todo:
            with ray_session(args.ray, args.verbose) as ray:
                counter = Progress(len(todo), "predicting") if len(todo) > CHUNK else None
                blocks = classify_blocks(ray, todo, predictor, args.batch_size)
                for block, p_woman, errors in blocks:
                    good = [i for i, error in enumerate(errors) if not error]
                    for error in errors:
                        if error:
                            warn(f"{error} (skipped)")
                    rows = image_rows(
                        [block[i] for i in good], p_woman[good], predictor.threshold, band
                    )
                    out.write(rows)
                    written += len(rows)
                    skipped += len(block) - len(good)
                    if band:
                        unsure += int(((p_woman[good] > band[0]) & (p_woman[good] < band[1])).sum())
                    if counter:
                        counter.update(written + skipped)
                if counter:
                    counter.done()
    finally:
        out.close()
    more = f" ({len(out.done)} were there already)" if out.done else ""
    said = f" ({unsure} uncertain)" if band else ""
    print(f"{written} predictions written to {args.csv}{said}{more}")
    return 1 if skipped else 0


def classify_folder(
    predictor: "Predictor", samples: Samples, args: argparse.Namespace
) -> "FolderResult":
    """evaluate --ray: P(woman) for every readable image of `samples`, classified on Ray, as
    `Predictor.folder` returns it (the kept images in their listed order)."""
    check_ray_flags(args)
    index = {path: i for i, path in enumerate(samples.paths)}
    p_woman = np.full(len(samples), np.nan)
    with ray_session(args.ray, args.verbose) as ray:
        counter = Progress(len(samples), "predicting") if len(samples) > CHUNK else None
        done = 0
        unique = list(dict.fromkeys(samples.paths))
        for block, p_block, errors in classify_blocks(ray, unique, predictor, args.batch_size):
            for path, p, error in zip(block, p_block, errors):
                if error:
                    warn(f"{error} (skipped)")
                else:
                    p_woman[index[path]] = p
            done += len(block)
            if counter:
                counter.update(done)
        if counter:
            counter.done()
    # a path listed twice (a table may) has one answer: both places get it
    p_woman = np.array([p_woman[index[path]] for path in samples.paths])
    kept = np.flatnonzero(~np.isnan(p_woman))
    if not len(kept):
        raise UserError("none of the images could be read")
    return FolderResult(
        samples.subset(kept), p_woman[kept], len(samples) - len(kept),
        threshold=predictor.threshold,
    )  # fmt: skip
