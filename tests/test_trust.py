"""Nothing trusted unchecked: links that loop, stored metadata, every decoder, markup in names,
strict JSON, colliding outputs, the truth table's round trip, adapt's edges, run folders.

One test (or a small family) per kind of input the toolkit must not take on trust; each checks the
mechanism with more than one case, and that the answer is one line (exit 2) or a warning, never a
traceback nor a silent wrong answer.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import error_line

import dataset as dataset_cli
import gender_mAP
import gender_single_predict
from gender import UserError


def add_loops(root: Path) -> None:
    """A link to itself, two links to each other and a folder link that loops, in each class."""
    for name in ("man", "woman"):
        folder = root / name
        (folder / "self.jpg").symlink_to("self.jpg")
        (folder / "a.png").symlink_to("b.png")
        (folder / "b.png").symlink_to("a.png")
        (folder / "ring").symlink_to("ring")


# 1. a link that loops is a warning and skipped, in every walk


def test_looping_links_are_skipped_by_every_walk(data_copy, trained_run, tmp_path, capsys):
    add_loops(data_copy)
    assert dataset_cli.main(["truth", str(data_copy), "--out", str(tmp_path / "t")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("cannot be followed") == 8, err
    assert "self.jpg" not in (tmp_path / "t.txt").read_text()
    assert gender_mAP.main([str(data_copy), str(trained_run)]) == 0
    assert "cannot be followed" in capsys.readouterr().err
    # a looping link given by name is one line
    assert gender_single_predict.main([str(data_copy / "man" / "self.jpg"), str(trained_run)]) == 2
    assert "loops" in error_line(capsys.readouterr().err)
