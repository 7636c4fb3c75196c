"""Shared fixtures: a tiny synthetic man/woman tree and one tiny trained run per session.

Everything is written under pytest's tmp folders; nothing is downloaded and nothing is written
into the repository or into ../shared.
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"  # before anything imports Keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The environment before the commands' set-up below: a fresh process gets this one, so it sees
# what a user's shell gives it, not the defaults `gender.console.quiet()` sets in this process.
USER_ENVIRONMENT = dict(os.environ)

import hashlib  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_WEIGHTS = SHARED / "weights"
SHARED_DATA = SHARED / "data"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gender.console import quiet  # noqa: E402

# The tests call the commands' main() in this process: it runs as a command does, whichever test
# file imports a command first (or none).
quiet()

IMAGE_SIZE = 32
PER_CLASS = 16
PERSONS_PER_CLASS = 4  # 4 images per person
# Person numbers: men 000-003, women 010-013 (file names like "003_1_a.png").
PERSON_OFFSET = {"man": 0, "woman": 10}


def pytest_configure(config):
    # Keras 3.15 on NumPy 2 warns from inside its own TF backend on every predict; not ours.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning",
    )


def make_image_tree(root, per_class=PER_CLASS, size=IMAGE_SIZE, seed=0):
    """Write root/{man,woman}/PPP_K_a.png: dark 'men', bright 'women', each with a left-side mark.

    The classes are easy to tell apart (dark vs bright), but no test depends on accuracy. The mark
    on the left makes every image left-right asymmetric, so a horizontal flip changes it.
    """
    import cv2

    rng = np.random.default_rng(seed)
    root = Path(root)
    per_person = per_class // PERSONS_PER_CLASS
    for name, base in (("man", 60), ("woman", 190)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.normal(base, 25, (size, size, 3)).clip(0, 255).astype(np.uint8)
            image[4:12, 2:8] = rng.integers(0, 256, 3, dtype=np.uint8)  # off-centre mark
            person = PERSON_OFFSET[name] + i // per_person
            cv2.imwrite(str(folder / f"{person:03d}_{i % per_person}_a.png"), image)
    return root


def tree_digest(root) -> dict:
    """{relative path: sha256} of every file under root (read only; links are read through)."""
    root = Path(root)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def write_truncated_jpeg(path, size=32):
    """A real JPEG cut in half: starts with FFD8, has no FFD9 end marker."""
    import cv2

    image = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    data = buffer.tobytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return Path(path)


def error_line(err: str) -> str:
    """Assert `err` (captured stderr) is one 'error: ...' line without a traceback; return it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def predict_in_fresh_process(argv) -> subprocess.CompletedProcess:
    """Run gender_single_predict.main(argv) in a new Python, in USER_ENVIRONMENT; its stdout
    ends with a line 'HEAVY [...]' naming the first TensorFlow/Keras modules it imported
    ('HEAVY []': none)."""
    code = (
        "import sys, gender_single_predict as g\n"
        f"status = g.main({[str(a) for a in argv]!r})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('HEAVY', heavy[:5])\n"
        "sys.exit(status)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=USER_ENVIRONMENT,
    )  # fmt: skip


def run_dirs(out) -> list:
    return sorted(p for p in Path(out).iterdir() if p.is_dir())


def train_small(data, out, *flags) -> Path:
    """gender_train.py with cnn3 at 32x32, batch 8, and `flags` into `out`: its one run folder."""
    import gender_train

    argv = ["--data", str(data), "--model", "cnn3", "--image-size", str(IMAGE_SIZE),
            "--batch-size", "8", *flags, "--out", str(out)]  # fmt: skip
    assert gender_train.main(argv) == 0
    (run,) = run_dirs(out)
    return run


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory):
    """A read-only-by-convention {man,woman} tree of 16 32x32 PNGs per class (4 persons each)."""
    return make_image_tree(tmp_path_factory.mktemp("data") / "faces")


@pytest.fixture
def data_copy(image_tree, tmp_path):
    """A private copy of image_tree that a test may add files to."""
    return Path(shutil.copytree(image_tree, tmp_path / "faces"))


@pytest.fixture(scope="session")
def trained_run(image_tree, tmp_path_factory):
    """cnn3 at 32x32 trained for 1 epoch, once per session; the run folder (treat as read-only)."""
    import gender_train

    out = tmp_path_factory.mktemp("runs")
    status = gender_train.main(
        [
            "--data", str(image_tree), "--model", "cnn3", "--image-size", str(IMAGE_SIZE),
            "--epochs", "1", "--batch-size", "8", "--by-person", "--out", str(out),
            "--no-export",  # the export tests make their own; prediction runs the .keras
        ]
    )  # fmt: skip
    assert status == 0
    (run_dir,) = run_dirs(out)
    return run_dir
