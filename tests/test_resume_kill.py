"""Kill a real training process with SIGKILL at several points, then resume it.

`gender_train.py` runs as a subprocess (cnn3 on 32x32 images) and is killed: right after its
first checkpoint appears, during a checkpoint write (while the temporary file exists), and
between the last.keras/best.keras links and the run.json commit. The last two use the test hook
GENDER_TEST_PAUSE_IN_SAVE (`gender.atomic._test_pause`), which holds an atomic write between its
temporary file and the rename. Each killed folder is resumed to the end and must then be
consistent: one history row per epoch, run.json agreeing with it, no temporaries, loadable
last.keras and best.keras, and at most one finished epoch lost.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import IMAGE_SIZE, REPO, make_image_tree

import gender_train
from gender.config import read_run_info
from gender.runs import read_history

EPOCHS = 5
START_TIMEOUT = 300  # seconds to reach the kill point; the machine may be busy training
RUN_FILES = {"best.keras", "last.keras", "history.csv", "curves.png", "val.txt", "run.json",
             "report.html"}  # fmt: skip


def _finished_checkpoint(run_dir: Path, number: int):
    return (run_dir / f"epoch_{number:03d}.keras").is_file() or None


def _checkpoint_temporary(run_dir: Path, number: int):
    return any(run_dir.glob(f".epoch_{number:03d}.*.keras")) or None


def _commit_temporary(run_dir: Path, number: int):
    """Epoch `number` saved and linked, its run.json commit held by the hook."""
    last, checkpoint = run_dir / "last.keras", run_dir / f"epoch_{number:03d}.keras"
    if not any(run_dir.glob(".run.*.json")) or not checkpoint.is_file() or not last.is_file():
        return None
    return os.path.samefile(last, checkpoint) or None


def finished_epochs(run_dir: Path) -> int:
    """The last epoch whose training had finished at the kill: its checkpoint or temporary."""
    numbers = [
        int(m.group(1))
        for p in run_dir.iterdir()
        if (m := re.match(r"^\.?epoch_(\d{3})\.", p.name))
    ]
    return max(numbers, default=0)


def train_until(tmp_path: Path, pause: str | None, killed_at) -> Path:
    """Start gender_train.py, SIGKILL it as soon as killed_at(run_dir) is true; the run folder."""
    data = make_image_tree(tmp_path / "faces")
    out = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != "GENDER_TEST_PAUSE_IN_SAVE"}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    if pause:
        env["GENDER_TEST_PAUSE_IN_SAVE"] = pause
    argv = [
        sys.executable, str(REPO / "gender_train.py"), "--data", str(data), "--model", "cnn3",
        "--image-size", str(IMAGE_SIZE), "--epochs", str(EPOCHS), "--batch-size", "8",
        "--out", str(out), "--keep", "0",  # every epoch's checkpoint, to compare them
    ]  # fmt: skip
    log = tmp_path / "train.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                runs = sorted(p for p in out.glob("cnn3-*") if p.is_dir()) if out.is_dir() else []
                if runs and killed_at(runs[0]):
                    proc.kill()  # SIGKILL, to this process only
                    break
                assert proc.poll() is None, f"training ended before the kill:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"kill point not reached:\n{log.read_text()}"
                time.sleep(0.02)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == -9
    return runs[0]


@pytest.mark.parametrize(
    "pause, killed_at, committed",
    [
        pytest.param(
            None, lambda run: _finished_checkpoint(run, 1), None,
            id="after-first-checkpoint", marks=pytest.mark.slow,
        ),
        pytest.param(
            "120:epoch_002.keras", lambda run: _checkpoint_temporary(run, 2), 1,
            id="during-checkpoint-write",
        ),
        pytest.param(
            "2:run.json", lambda run: _commit_temporary(run, 3), 2,
            id="between-links-and-commit", marks=pytest.mark.slow,
        ),
    ],
)  # fmt: skip
def test_killed_training_resumes_consistently(
    tmp_path, monkeypatch, capsys, pause, killed_at, committed
):
    from gender.predictor import open_keras

    monkeypatch.delenv("GENDER_TEST_PAUSE_IN_SAVE", raising=False)
    run = train_until(tmp_path, pause, killed_at)
    finished = finished_epochs(run)
    if committed is not None:  # the kill landed where the case says (run.json at `committed`)
        assert json.loads((run / "run.json").read_text())["epochs_done"] == committed
        assert finished == committed + 1

    assert gender_train.main(["resume", str(run), "--no-export"]) == 0
    out = capsys.readouterr().out
    resumed = int(re.search(r"resuming .* after epoch (\d+)", out).group(1))
    assert finished - 1 <= resumed <= finished, out  # at most one finished epoch lost

    names = {p.name for p in run.iterdir()}
    checkpoints = {f"epoch_{n:03d}.keras" for n in range(1, EPOCHS + 1)}
    assert names == RUN_FILES | checkpoints, names  # no temporaries, no cache, nothing extra
    history = read_history(run)
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    info = read_run_info(run)
    assert info.epochs_done == EPOCHS
    best = min(history, key=lambda row: row["val_loss"])
    assert info.best_epoch == best["epoch"]
    assert info.best_metric == {"val_loss": best["val_loss"]}
    last_file = run / f"epoch_{EPOCHS:03d}.keras"
    assert (run / "last.keras").read_bytes() == last_file.read_bytes()
    best_file = run / f"epoch_{info.best_epoch:03d}.keras"
    assert (run / "best.keras").read_bytes() == best_file.read_bytes()
    for name in ("last.keras", "best.keras"):
        assert open_keras(run / name).output_shape == (None, 1)
