"""Run folders: `weights/<model>-<YYYYmmdd-HHMMSS>/` with per-epoch checkpoints and their record.

A run folder holds epoch_NNN.keras (one per epoch, the oldest rotated out with --keep), best.keras,
last.keras, history.csv (one row per epoch), curves.png (loss and accuracy, train and val), val.txt
(the validation images, as a ground-truth table) and run.json (model, image size, class names,
flags, versions, best epoch). Every file is written atomically, so an interrupted run leaves the
previous complete version of each, and `--resume` can continue from last.keras.
"""

import csv
import io
import json
import os
import re
import time
from datetime import datetime
from pathlib import Path

import keras

from gender import CLASS_NAMES, UserError
from gender.atomic import atomic_path, make_folder, write_text

RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"


def new_run_dir(out, model_name: str) -> Path:
    """Create `out/<model>-<timestamp>/`, adding a suffix if that name is taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{model_name}-{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    make_folder(run_dir.parent)
    try:
        run_dir.mkdir()
    except OSError as err:
        raise UserError(f"{run_dir}: cannot be made ({err.strerror})") from None
    return run_dir


def versions() -> dict[str, str]:
    import tensorflow as tf

    return {"keras": keras.__version__, "tensorflow": tf.__version__}


def write_run_info(run_dir, info: dict) -> None:
    write_text(Path(run_dir) / RUN_FILE, json.dumps(info, indent=2, sort_keys=True) + "\n")


def read_run_info(run_dir, name: str = RUN_FILE) -> dict:
    """Read run.json (or another info file `name`) of a run folder; {} when there is none."""
    path = Path(run_dir) / name
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a valid run.json ({err})") from None
    if tuple(info.get("class_names", CLASS_NAMES)) != CLASS_NAMES:
        raise UserError(
            f"{path}: class names {info['class_names']} differ from {list(CLASS_NAMES)}"
        )
    return info


def model_info_name(weights: Path) -> str:
    """The info file of a weights file: its own `<stem>.json` when present, else run.json.

    A run folder has one run.json for all its checkpoints; weights/pretrained/ holds several
    models, each with its own `face.json`, `pedestrian.json`.
    """
    own = Path(weights).with_suffix(".json")
    return own.name if own.is_file() else RUN_FILE


def read_history(run_dir) -> list[dict]:
    """The per-epoch rows of history.csv (numbers as floats; 'epoch' as int)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in rows]


# atomic_path's temporaries: a dot, the stem, 8 random characters, the suffix
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.[A-Za-z0-9]+$")


def reconcile_run(run_dir, info: dict, history: list[dict]) -> tuple[list[dict], Path]:
    """Bring an interrupted run folder back to its last committed epoch, before --resume.

    Deletes temporaries of interrupted saves and the decoded-image cache, trims history.csv
    rows and epoch checkpoints past run.json's epochs_done (the commit), and points last.keras
    and best.keras back at committed checkpoints.

    Returns:
        (history, checkpoint): the committed rows, and the checkpoint to resume from.
    """
    import shutil

    run_dir = Path(run_dir)
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and _TEMPORARY.match(path.name):
            path.unlink()
            print(f"removed {path.name}: left by an interrupted save")
    shutil.rmtree(run_dir / "cache", ignore_errors=True)
    done = min(int(info.get("epochs_done", len(history))), len(history))
    for path in sorted(run_dir.glob("epoch_*.keras")):
        number = path.stem.removeprefix("epoch_")
        if number.isdigit() and int(number) > done:
            path.unlink()
            print(f"removed {path.name}: its epoch was not committed to {RUN_FILE}")
    if len(history) > done:
        write_history(run_dir, history[:done])
        print(f"{HISTORY_FILE}: rows past epoch {done} removed (not committed to {RUN_FILE})")
    info["epochs_done"] = done
    checkpoint = run_dir / f"epoch_{done:03d}.keras"
    if checkpoint.is_file():
        _link_over(checkpoint, run_dir / "last.keras")
    best = run_dir / f"epoch_{int(info.get('best_epoch') or 0):03d}.keras"
    if best.is_file():
        _link_over(best, run_dir / "best.keras")
    return history[:done], run_dir / "last.keras"


def _link_over(source: Path, target: Path) -> None:
    """Point `target` at the same file as `source` (hard link, else copy), atomically."""
    with atomic_path(target) as tmp:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:  # file systems without hard links
            import shutil

            shutil.copyfile(source, tmp)


class RunRecorder(keras.callbacks.Callback):
    """Save every epoch's checkpoint, best/last, the history table and curves, and run.json.

    Args:
        run_dir: the run folder.
        info: the run.json dict; updated with epochs_done, best_epoch and best metric.
        monitor: the logged metric that picks best.keras (lower is better).
        keep: how many epoch_NNN.keras files to keep (0 = all).
        history: rows of earlier epochs when resuming.
    """

    def __init__(self, run_dir, info: dict, monitor: str, keep: int = 0, history=None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.info = info
        self.monitor = monitor
        self.keep = keep
        self.history = list(history or [])
        scores = [row[monitor] for row in self.history if monitor in row]
        self.best = min(scores) if scores else float("inf")
        self._started = 0.0
        # The model to save when Keras trains another one: the suffix of a cached model shares
        # its layers with the full model, and the full model is what the other scripts load.
        self.full_model = None

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        number = epoch + 1  # epochs are numbered from 1 in file names and tables
        row = {"epoch": number, "seconds": round(time.perf_counter() - self._started, 2)}
        row.update({k: float(v) for k, v in logs.items()})
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.history.append(row)

        # run.json's epochs_done is the commit, written last: a kill before it leaves at most
        # files of the uncommitted epoch, which reconcile_run discards on --resume.
        checkpoint = self.run_dir / f"epoch_{number:03d}.keras"
        with atomic_path(checkpoint) as tmp:
            (self.full_model or self.model).save(tmp)
        self._write_history()
        plot_curves(self.history, self.run_dir / "curves.png")
        _link_over(checkpoint, self.run_dir / "last.keras")
        score = row.get(self.monitor)
        if score is not None and score < self.best:
            self.best = score
            _link_over(checkpoint, self.run_dir / "best.keras")
            self.info.update(best_epoch=number, best_metric={self.monitor: score})
        self.info["epochs_done"] = number
        write_run_info(self.run_dir, self.info)
        self._rotate(number)  # after the commit: the committed epoch's checkpoint always exists

    def _rotate(self, number: int) -> None:
        if self.keep <= 0:
            return
        old = self.run_dir / f"epoch_{number - self.keep:03d}.keras"
        if number - self.keep >= 1 and old.exists():
            old.unlink()  # best.keras and last.keras are separate links and stay

    def _write_history(self) -> None:
        write_history(self.run_dir, self.history)


def write_history(run_dir, rows: list[dict]) -> None:
    """Write history.csv (one row per epoch), atomically."""
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text(Path(run_dir) / HISTORY_FILE, buffer.getvalue())


def plot_curves(history: list[dict], path) -> None:
    """Loss and accuracy per epoch for train and validation (seed 001's Figure 2), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = [row.get(prefix + metric) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)
