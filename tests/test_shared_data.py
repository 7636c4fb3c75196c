"""The tools on a few real images from ../shared/data (skipped when that folder is absent).

Only links to 25 + 25 files are made, in tmp_path; the shared files are never written.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import tree_digest

import dataset
from gender.data import person_ids
from gender.images import read_image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PER_CLASS = 25

pytestmark = pytest.mark.slow


def small_sample(tmp_path, name):
    """tmp_path/name/{man,woman}/ holding links to the first PER_CLASS files of each class."""
    source = SHARED_DATA / name
    if not source.is_dir():
        pytest.skip(f"{source} is absent")
    root = tmp_path / name
    for cls in ("man", "woman"):
        (root / cls).mkdir(parents=True)
        for path in sorted((source / cls).iterdir())[:PER_CLASS]:
            os.symlink(path, root / cls / path.name)
    return root


@pytest.mark.parametrize("name", ["faces_utk", "faces_web", "pedestrian_cctv"])
def test_real_images_decode_as_rgb(tmp_path, name):
    root = small_sample(tmp_path, name)
    for path in sorted(root.rglob("*"))[::5]:
        if path.is_file():
            image = read_image(path)
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_check_on_real_pedestrian_files(tmp_path, capsys):
    root = small_sample(tmp_path, "pedestrian_cctv")
    before = tree_digest(root)
    status = dataset.main(["check", str(root)])
    out = capsys.readouterr().out
    assert f"{2 * PER_CLASS} files (man {PER_CLASS}, woman {PER_CLASS})" in out
    problems = [line for line in out.splitlines() if line.startswith(("bad:", "suspicious:"))]
    assert status == (1 if problems else 0)
    assert status == 0, "the shared pedestrian set was checked clean: " + "; ".join(problems)
    assert tree_digest(root) == before


def test_split_real_pedestrians_by_person(tmp_path, capsys):
    root = small_sample(tmp_path, "pedestrian_cctv")
    out = tmp_path / "split"
    assert dataset.main(["split", str(root), "--out", str(out), "--val", "0.3", "--by-person"]) == 0
    assert "persons on both sides: 0" in capsys.readouterr().out
    train = sorted((out / "train").rglob("*.jpg"))
    val = sorted((out / "val").rglob("*.jpg"))
    assert len(train) + len(val) == 2 * PER_CLASS
    assert not set(person_ids(train)) & set(person_ids(val))
