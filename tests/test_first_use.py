"""The frictions a new user meets after the first run: a closed pipe, a finished resume, the
threshold a bundle stored, a model given the other task's images, a mistyped flag."""

import subprocess
import sys

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
