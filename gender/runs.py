"""Run folders: `weights/<model>-<YYYYmmdd-HHMMSS>/` with per-epoch checkpoints and their record.

A run folder holds epoch_NNN.keras (one per epoch, the oldest rotated out with --keep), best.keras,
last.keras, history.csv (one row per epoch), curves.png (loss and accuracy, train and val), val.txt
(the validation images, as a ground-truth table) and run.json (model, image size, class names,
flags, versions, best epoch). Every file is written atomically, so an interrupted run leaves the
previous complete version of each, and `resume` can continue from last.keras.

This module names, lists and repairs the run files (no Keras); run.json itself is read and written
as a `gender.config.RunRecord`, and the callback that writes the files during training is
`gender.recorder.RunRecorder`.
"""

import csv
import json
import math
import os
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Protocol

from gender import UserError
from gender.atomic import atomic_path, make_folder, write_text
from gender.console import command
from gender.tables import csv_text

RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"


def new_run_dir(out: str | Path, model_name: str) -> Path:
    """Create `out/<model>-<timestamp>/`, adding a suffix -2, -3, ... if that name is taken.

    mkdir itself is the test: two runs started in the same second (a scheduler's array job)
    each get their own folder, where checking first and making after would race.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{model_name}-{stamp}"
    make_folder(base.parent)
    for n in range(1, 10_000):
        run_dir = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
        except OSError as err:
            raise UserError(f"{run_dir}: cannot be made ({err.strerror})") from None
    raise UserError(f"{base}: 10,000 run folders of this second exist already")


def is_run_folder(path: str | Path) -> bool:
    """A folder that holds a model (run.json, best.keras or last.keras), not images."""
    path = Path(path)
    return path.is_dir() and any(
        (path / name).is_file() for name in (RUN_FILE, "best.keras", "last.keras")
    )


def run_kept(run_dir: str | Path, epochs_done: int) -> str:
    """What an interrupted run leaves: its last finished epoch, and the command to go on."""
    done = f"epoch {epochs_done}" if epochs_done else "no finished epoch yet"
    return f"{run_dir} keeps {done}; continue with: {command('train')} resume {run_dir}"


def finite_number(value: object) -> bool:
    """A finite int or float; true and false are not numbers here (JSON booleans)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def whole_number(value: object) -> bool:
    """An int; true and false are not numbers here (JSON booleans)."""
    return isinstance(value, int) and not isinstance(value, bool)


def field_error(path: str | Path, field: str, problem: str, value: object) -> UserError:
    """The one line for a bad field of a stored JSON file: the file, the field, what it holds."""
    return UserError(f"{path}: field {field!r} {problem} (got {json.dumps(value)[:60]})")


def model_info_name(weights: Path) -> str:
    """The info file of a weights file: its own `<stem>.json` when present, else run.json.

    A run folder has one run.json for all its checkpoints; weights/pretrained/ holds several
    models, each with its own `face.json`, `pedestrian.json`.
    """
    own = Path(weights).with_suffix(".json")
    return own.name if own.is_file() else RUN_FILE


def read_history(run_dir: str | Path) -> list[dict]:
    """The per-epoch rows of history.csv (numbers as floats; 'epoch' as int)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: cannot be read ({err})") from None
    history = []
    for number, row in enumerate(rows, 2):  # line 1 is the header
        try:
            history.append(
                {k: int(v) if k == "epoch" else float(v) for k, v in row.items() if k is not None}
            )
        except (TypeError, ValueError):
            raise UserError(
                f"{path}:{number}: expected numbers, got {list(row.values())[:6]}"
            ) from None
    return history


def write_history(run_dir: str | Path, rows: list[dict]) -> None:
    """Write history.csv (one row per epoch), atomically."""
    fields = list(dict.fromkeys(k for row in rows for k in row))
    table = csv_text(fields, ([row.get(field, "") for field in fields] for row in rows))
    write_text(Path(run_dir) / HISTORY_FILE, table)


# atomic_path's temporaries: a dot, the stem, 8 random characters, the suffix
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.[A-Za-z0-9]+$")


class Commit(Protocol):
    """What reconcile_run reads and sets of a run's record (`gender.config.RunRecord`)."""

    epochs_done: int | None
    best_epoch: int | None


def reconcile_run(
    run_dir: str | Path, record: Commit, history: list[dict]
) -> tuple[list[dict], Path]:
    """Bring an interrupted run folder back to its last committed epoch, before resuming.

    run.json's epochs_done is the commit (`gender.recorder.RunRecorder` writes it last). This
    deletes temporaries of interrupted saves and the decoded-image cache, trims history.csv
    rows and epoch checkpoints past epochs_done, and points last.keras and best.keras back at
    committed checkpoints (or removes them when no epoch was committed: epochs_done 0).

    Returns:
        (history, checkpoint): the committed rows, and the checkpoint to resume from.
    """
    run_dir = Path(run_dir)
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and _TEMPORARY.match(path.name):
            path.unlink()
            print(f"removed {path.name}: left by an interrupted save")
    shutil.rmtree(run_dir / "cache", ignore_errors=True)
    committed = len(history) if record.epochs_done is None else record.epochs_done
    done = min(committed, len(history))
    for path in sorted(run_dir.glob("epoch_*.keras")):
        number = path.stem.removeprefix("epoch_")
        if number.isdigit() and int(number) > done:
            path.unlink()
            print(f"removed {path.name}: its epoch was not committed to {RUN_FILE}")
    if len(history) > done:
        write_history(run_dir, history[:done])
        print(f"{HISTORY_FILE}: rows past epoch {done} removed (not committed to {RUN_FILE})")
    record.epochs_done = done
    checkpoint = run_dir / f"epoch_{done:03d}.keras"
    if checkpoint.is_file():
        link_over(checkpoint, run_dir / "last.keras")
    best = run_dir / f"epoch_{record.best_epoch or 0:03d}.keras"
    if best.is_file():
        link_over(best, run_dir / "best.keras")
    if done == 0:  # killed in the first epoch: any last.keras or best.keras is uncommitted
        for name in ("last.keras", "best.keras"):
            if (run_dir / name).is_file():
                (run_dir / name).unlink()
                print(f"removed {name}: its epoch was not committed to {RUN_FILE}")
    return history[:done], run_dir / "last.keras"


def link_over(source: Path, target: Path) -> None:
    """Point `target` at the same file as `source` (hard link, else copy), atomically."""
    with atomic_path(target) as tmp:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(source, tmp)
