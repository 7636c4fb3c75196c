"""The bundled models (package data, gender/pretrained/): what runs when no weights are given.

They are part of the repository (committed), so these tests fail, not skip, when one is missing.
"""

import json
import re

import numpy as np
import pytest
from conftest import REPO

import gender_mAP
import gender_single_predict
from gender import TASKS
from gender.images import load_image
from gender.predictor import load_trained

PRETRAINED = REPO / "gender" / "pretrained"  # weights/pretrained links here
LINE = re.compile(r"^(?P<path>.+): (?P<label>man|woman) \(P\(woman\) (?P<p>[01]\.\d{3}) "
                  r"(>=|<) threshold [01]\.\d{3}; "
                  r"bundled (face|pedestrian) model, keras\)$")  # fmt: skip
# A committed model's size: one MobileNetV2 is under 10 MB; the face model averages it with dlib's
# face-identity network (22 MB of float32 weights). The wheel carries only the int8 files.
MAX_BYTES = {"face": 40 * 2**20, "face-fast": 12 * 2**20, "pedestrian": 12 * 2**20}
BUNDLED = {"face": "face", "face-fast": "face", "pedestrian": "pedestrian"}  # name: task


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_files(name):
    task = BUNDLED[name]
    model_file = PRETRAINED / f"{name}.keras"
    assert model_file.is_file(), f"{model_file} is missing"
    assert model_file.stat().st_size <= MAX_BYTES[name]
    for export in (".tflite", ".int8.tflite"):  # the int8 backend re-checks with float32
        assert (PRETRAINED / f"{name}{export}").is_file()
    info = json.loads((PRETRAINED / f"{name}.json").read_text())
    assert info["task"] == task
    assert info["class_names"] == ["man", "woman"]
    # the fast path reads only the export JSON: without the task a pedestrian model would
    # search its crops for faces
    assert json.loads((PRETRAINED / f"{name}.export.json").read_text())["task"] == task


@pytest.mark.parametrize("task", TASKS)
def test_predict_without_weights_uses_the_bundled_model(task, image_tree, capsys):
    image = sorted((image_tree / "woman").iterdir())[0]
    argv = [str(image), "--task", task, "--no-detect", "--backend", "keras"]
    assert gender_single_predict.main(argv) == 0
    match = LINE.match(capsys.readouterr().out.strip())
    assert match, "unexpected output"
    model, info = load_trained(PRETRAINED / f"{task}.keras")
    expected = float(model.predict(load_image(image, info.image_size)[None], verbose=0)[0, 0])
    assert float(match["p"]) == pytest.approx(expected, abs=1.1e-3)


def test_evaluate_without_weights_uses_the_bundled_face_model(image_tree, tmp_path):
    report_file = tmp_path / "report.json"
    assert gender_mAP.main([str(image_tree), "--json", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["weights"].endswith(str(PRETRAINED.relative_to(REPO) / "face.keras"))
    assert report["n"] == sum(1 for p in image_tree.rglob("*.png"))
    assert np.isfinite(report["map"])


def test_a_bundled_model_is_reached_by_its_name(image_tree, capsys):
    image = sorted((image_tree / "woman").iterdir())[0]
    assert gender_single_predict.main([str(image), "--weights", "face-fast", "--no-detect"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("; bundled face-fast model, int8)")
    # a name that is no bundled model is still a missing file, in one line
    assert gender_single_predict.main([str(image), "--weights", "face-slow", "--no-detect"]) == 2
    assert "face-slow: weights file not found" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(p.name for p in PRETRAINED.glob("*.json")))
def test_bundled_json_reads_as_a_record_and_writes_back_the_same(name, tmp_path):
    """The shipped model files are RunRecords as they are: nothing on disk needs rewriting, and
    a record written back holds the same JSON (unknown keys such as an export's int8 kept)."""
    from gender.config import RunRecord, read_info_file

    raw = json.loads((PRETRAINED / name).read_text())
    record = read_info_file(PRETRAINED / name)
    assert isinstance(record, RunRecord) and record.task_name in TASKS
    assert record.image_size == raw["image_size"] and record.model == raw["model"]
    record.write(tmp_path, name)
    assert json.loads((tmp_path / name).read_text()) == raw
