"""The frictions a new user meets after the first run: a closed pipe, a finished resume, the
threshold a bundle stored, a model given the other task's images, a mistyped flag."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, USER_ENVIRONMENT


def run_into_closed_pipe(argv) -> subprocess.CompletedProcess:
    """A toolkit command whose reader has gone before it writes (`... | head` at its quickest)."""
    process = subprocess.Popen(
        [sys.executable, *map(str, argv)], cwd=REPO, env=USER_ENVIRONMENT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    process.stdout.close()
    err = process.stderr.read()
    process.stderr.close()
    return subprocess.CompletedProcess(argv, process.wait(timeout=120), "", err)


@pytest.mark.parametrize(
    "argv",
    [["gender_mAP.py", "{data}"], ["dataset.py", "check", "{data}"]],
    ids=["gender_mAP.py", "dataset.py check"],
)
def test_a_closed_pipe_ends_quietly(image_tree, argv):
    argv = [REPO / argv[0], *(a.format(data=image_tree) for a in argv[1:])]
    done = run_into_closed_pipe(argv)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 141, done.stderr


def test_resuming_a_finished_run_says_so_and_does_nothing(trained_run, tmp_path, capsys):
    """The session's run trained all its epochs: resume names that and the way to train longer,
    at once (no decoding, no evaluation, no export), and leaves the folder as it was."""
    import json
    import shutil
    import time

    from conftest import tree_digest

    import gender_train

    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    info = json.loads((run / "run.json").read_text())
    assert info.get("finished") is True  # what training writes once it reaches its end
    before = tree_digest(run)
    for finished in (True, None):  # None: a folder written before run.json said so
        if finished is None:
            info.pop("finished")
            (run / "run.json").write_text(json.dumps(info))
            before = tree_digest(run)
        started = time.perf_counter()
        assert gender_train.main(["resume", str(run)]) == 0
        assert time.perf_counter() - started < 2
        out = capsys.readouterr().out.strip()
        assert out.startswith(
            f"{run} finished training: 1 of 1 epochs, best epoch 1. Nothing to resume"
        ), out
        assert out.endswith(f"resume {run} --epochs 11"), out
        assert tree_digest(run) == before
    assert gender_train.main(["resume", str(run), "--epochs", "1"]) == 0
    assert "has trained 1 epochs already: nothing to do up to --epochs 1" in capsys.readouterr().out
    assert tree_digest(run) == before
