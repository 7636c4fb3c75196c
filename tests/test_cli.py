"""Every command through its main(argv): train, resume, evaluate, predict and dataset.py.

The trained run comes from the session fixture `trained_run` (cnn3, 32x32, 1 epoch); tests that
change a run work on a copy. No test depends on the model being accurate.
"""

import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    IMAGE_SIZE,
    PER_CLASS,
    REPO,
    SHARED_WEIGHTS,
    error_line,
    run_dirs,
    train_small,
    tree_digest,
    write_truncated_jpeg,
)

import dataset
import gender_mAP
import gender_single_predict
import gender_train
from gender.data import person_ids, read_truth_table

TRAIN_FAST = ["--model", "cnn3", "--image-size", str(IMAGE_SIZE), "--batch-size", "8"]


def read_csv(path_or_text):
    text = Path(path_or_text).read_text() if isinstance(path_or_text, Path) else path_or_text
    return list(csv.reader(io.StringIO(text)))


def read_history(run_dir):
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- gender_train.py ----------------------------------------------------------------------------


def test_train_writes_the_run_folder(trained_run):
    assert re.fullmatch(r"cnn3-\d{8}-\d{6}(-\d+)?", trained_run.name)
    for name in ("epoch_001.keras", "best.keras", "last.keras", "history.csv", "curves.png",
                 "val.txt", "run.json"):  # fmt: skip
        assert (trained_run / name).is_file(), name
    assert not (trained_run / "epoch_002.keras").exists()
    assert (trained_run / "curves.png").read_bytes().startswith(b"\x89PNG")
    # no half-written temporary files are left behind
    assert not [p.name for p in trained_run.iterdir() if p.name.startswith(".")]


def test_train_run_json(trained_run, image_tree):
    info = json.loads((trained_run / "run.json").read_text())
    assert info["model"] == "cnn3"
    assert info["image_size"] == [IMAGE_SIZE, IMAGE_SIZE]
    assert info["class_names"] == ["man", "woman"]
    assert info["epochs_done"] == 1
    assert info["best_epoch"] == 1
    assert info["flags"]["data"] == [str(image_tree)]
    assert info["task"] == "face"
    total = sum(info["data"]["train"].values()) + sum(info["data"]["val"].values())
    assert total == 2 * PER_CLASS


def test_train_history_has_one_row_per_epoch(trained_run):
    rows = read_history(trained_run)
    assert len(rows) == 1
    assert rows[0]["epoch"] == "1"
    for column in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        assert np.isfinite(float(rows[0][column])), column


def test_train_best_and_last_are_loadable_models(trained_run):
    import keras

    model = keras.saving.load_model(trained_run / "best.keras", compile=False)
    assert tuple(model.input_shape) == (None, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert tuple(model.output_shape) == (None, 1)
    assert (trained_run / "last.keras").read_bytes() == (
        trained_run / "epoch_001.keras"
    ).read_bytes()


def test_train_by_person_keeps_each_person_on_one_side(trained_run, image_tree):
    val = read_truth_table(trained_run / "val.txt")
    assert val.counts()["man"] > 0 and val.counts()["woman"] > 0
    every = sorted(str(p.resolve()) for p in image_tree.rglob("*.png"))
    val_paths = set(val.paths)
    assert val_paths < set(every)
    train_paths = [p for p in every if p not in val_paths]
    assert not set(person_ids(train_paths)) & set(person_ids(val.paths))


def test_resume_continues_to_epoch_2(trained_run, tmp_path, capsys):
    run = Path(shutil.copytree(trained_run, tmp_path / trained_run.name))
    assert gender_train.main(["--resume", str(run), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "after epoch 1" in out
    rows = read_history(run)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert rows[0] == read_history(trained_run)[0]  # epoch 1 is kept as it was
    assert (run / "epoch_001.keras").is_file() and (run / "epoch_002.keras").is_file()
    assert (run / "last.keras").read_bytes() == (run / "epoch_002.keras").read_bytes()
    info = json.loads((run / "run.json").read_text())
    assert info["epochs_done"] == 2
    # nothing was written next to the original run
    assert run_dirs(trained_run.parent) == [trained_run]
    # resuming a finished run trains no further epoch
    assert gender_train.main(["--resume", str(run), "--epochs", "2"]) == 0
    assert [row["epoch"] for row in read_history(run)] == ["1", "2"]
    assert not (run / "epoch_003.keras").exists()


def test_train_pools_several_data_folders(image_tree, tmp_path):
    from conftest import make_image_tree

    second = make_image_tree(tmp_path / "second", per_class=8, seed=5)
    out = tmp_path / "runs"
    argv = ["--data", str(image_tree), str(second), *TRAIN_FAST, "--epochs", "1",
            "--by-person", "--out", str(out)]  # fmt: skip
    assert gender_train.main(argv) == 0
    (run,) = run_dirs(out)
    info = json.loads((run / "run.json").read_text())
    total = sum(info["data"]["train"].values()) + sum(info["data"]["val"].values())
    assert total == 2 * PER_CLASS + 2 * 8
    val = read_truth_table(run / "val.txt")
    # each folder was split on its own: both give validation images
    assert any(str(second) in p for p in val.paths)
    assert any(str(image_tree) in p for p in val.paths)


def test_weights_with_their_own_json_beside_them(trained_run, image_tree, tmp_path, capsys):
    # weights/pretrained/ holds several models, each described by <stem>.json, not run.json
    folder = tmp_path / "pretrained"
    folder.mkdir()
    shutil.copy(trained_run / "best.keras", folder / "face.keras")
    info = json.loads((trained_run / "run.json").read_text())
    (folder / "face.json").write_text(json.dumps(info))
    (folder / "run.json").write_text(json.dumps({**info, "image_size": [99, 99]}))  # not this one
    image = sorted((image_tree / "man").iterdir())[0]
    assert gender_single_predict.main([str(image), str(folder / "face.keras"), "--no-detect"]) == 0
    assert LINE.match(capsys.readouterr().out.strip())


def test_keep_rotates_epoch_checkpoints(image_tree, tmp_path):
    run = train_small(image_tree, tmp_path / "runs", "--epochs", "3", "--keep", "2",
                      "--augment", "none")  # fmt: skip
    assert sorted(p.name for p in run.glob("epoch_*.keras")) == [
        "epoch_002.keras",
        "epoch_003.keras",
    ]
    assert (run / "best.keras").is_file() and (run / "last.keras").is_file()
    assert len(read_history(run)) == 3
    assert json.loads((run / "run.json").read_text())["epochs_done"] == 3


def test_label_smoothing_is_the_loss_trained_and_resumed(image_tree, tmp_path):
    import keras

    run = train_small(image_tree, tmp_path / "runs", "--epochs", "1", "--label-smoothing", "0.2",
                      "--augment", "none")  # fmt: skip
    assert json.loads((run / "run.json").read_text())["flags"]["label_smoothing"] == 0.2
    # the checkpoint a --resume continues from carries the same smoothed loss
    loss = keras.saving.load_model(run / "last.keras").loss
    assert isinstance(loss, keras.losses.BinaryCrossentropy)
    assert loss.get_config()["label_smoothing"] == pytest.approx(0.2)


@pytest.mark.parametrize("value", ["0.5", "-0.1", "nan", "a little"])
def test_label_smoothing_out_of_range_is_an_argparse_error(image_tree, capsys, value):
    with pytest.raises(SystemExit) as info:
        gender_train.main(["--data", str(image_tree), "--label-smoothing", value])
    assert info.value.code == 2
    assert "--label-smoothing" in capsys.readouterr().err


def test_label_smoothing_makes_a_confident_right_answer_cost_something():
    import keras

    from gender.models import compile_model

    # a "model" that answers P(woman) = sigmoid(12) ~ 1 for any input
    inputs = keras.Input((1,))
    bias = keras.initializers.Constant(12.0)
    outputs = keras.layers.Dense(1, "sigmoid", kernel_initializer="zeros", bias_initializer=bias)(
        inputs
    )
    model = keras.Model(inputs, outputs)
    x, y = np.zeros((4, 1), np.float32), np.ones((4, 1), np.float32)
    compile_model(model, 1e-3)
    plain = model.evaluate(x, y, verbose=0)[0]
    compile_model(model, 1e-3, label_smoothing=0.2)
    smoothed = model.evaluate(x, y, verbose=0)[0]
    assert plain < 1e-4
    # target 0.9: 0.1 * -log(1 - sigmoid(12)) = 0.1 * 12 ~ 1.2
    assert smoothed == pytest.approx(1.2, abs=0.05)


def test_train_skips_bad_files_and_leaves_the_data_untouched(data_copy, tmp_path, capsys):
    (data_copy / "man" / "001_9_text.jpg").write_text("I am not a JPEG")
    write_truncated_jpeg(data_copy / "woman" / "011_9_cut.jpg")
    before = tree_digest(data_copy)
    out = tmp_path / "runs"
    argv = ["--data", str(data_copy), *TRAIN_FAST, "--epochs", "1", "--augment", "flip",
            "--out", str(out)]  # fmt: skip
    assert gender_train.main(argv) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert any("001_9_text.jpg" in line for line in warnings), err
    assert any("011_9_cut.jpg" in line for line in warnings), err
    assert "Traceback" not in err
    assert tree_digest(data_copy) == before  # byte for byte, and no file added or removed
    (run,) = run_dirs(out)
    info = json.loads((run / "run.json").read_text())
    assert sum(info["data"]["train"].values()) + sum(info["data"]["val"].values()) == 2 * PER_CLASS
    val = (run / "val.txt").read_text()
    assert "001_9_text" not in val and "011_9_cut" not in val


def test_train_missing_data_folder(tmp_path, capsys):
    missing = tmp_path / "no_such_folder"
    out = tmp_path / "runs"
    assert gender_train.main(["--data", str(missing), *TRAIN_FAST, "--out", str(out)]) == 2
    assert str(missing) in error_line(capsys.readouterr().err)
    assert not out.exists() or not any(out.iterdir())  # no run folder for a failed start


def test_train_without_data(tmp_path, capsys):
    assert gender_train.main([*TRAIN_FAST, "--out", str(tmp_path)]) == 2
    assert "--data" in error_line(capsys.readouterr().err)


def test_train_folder_without_classes(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    argv = ["--data", str(tmp_path / "photos"), *TRAIN_FAST, "--out", str(tmp_path / "runs")]
    assert gender_train.main(argv) == 2
    assert "photos" in error_line(capsys.readouterr().err)


def test_train_image_too_small_for_cnn7(image_tree, tmp_path, capsys):
    argv = ["--data", str(image_tree), "--model", "cnn7", "--image-size", "64",
            "--epochs", "1", "--out", str(tmp_path / "runs")]  # fmt: skip
    assert gender_train.main(argv) == 2
    line = error_line(capsys.readouterr().err)
    assert "64x64" in line and "cnn7" in line


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--image-size", "16"], "--image-size"),
        (["--augment", "sparkle"], "sparkle"),
    ],
)
def test_train_bad_options(image_tree, tmp_path, capsys, flags, words):
    argv = ["--data", str(image_tree), "--model", "cnn3", "--epochs", "1", *flags,
            "--out", str(tmp_path / "runs")]  # fmt: skip
    assert gender_train.main(argv) == 2
    assert words in error_line(capsys.readouterr().err)


def test_train_missing_backbone_weights_file(image_tree, tmp_path, capsys):
    missing = tmp_path / "vgg16_notop.weights.h5"
    argv = ["--data", str(image_tree), "--model", "vgg16", "--image-size", "32", "--epochs", "1",
            "--backbone-weights", str(missing), "--out", str(tmp_path / "runs")]  # fmt: skip
    assert gender_train.main(argv) == 2
    assert str(missing) in error_line(capsys.readouterr().err)


def test_train_unknown_model_is_an_argparse_error(image_tree, capsys):
    with pytest.raises(SystemExit) as info:
        gender_train.main(["--data", str(image_tree), "--model", "resnet999"])
    assert info.value.code == 2
    assert "resnet999" in capsys.readouterr().err


def test_resume_of_a_folder_that_is_no_run(tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    assert gender_train.main(["--resume", str(tmp_path / "empty_run")]) == 2
    assert "empty_run" in error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--data", "d"], ["train", "--data", "d"]),
        (["--resume", "r", "--epochs", "2"], ["resume", "r", "--epochs", "2"]),
        (["--export", "w", "--out", "o"], ["export", "w", "--out", "o"]),
        (["--out", "o", "--bundle=r"], ["bundle", "r", "--out", "o"]),
        (["--demo", "--out", "o"], ["demo", "--out", "o"]),
        (["resume", "r"], ["resume", "r"]),
    ],
)
def test_train_mode_flags_map_onto_subcommands(argv, expected):
    from gender.cli.train import with_mode

    assert with_mode(argv) == expected


def test_train_config_reads_an_old_run_json():
    """A run.json from before TrainConfig: a str --data, no task, flags that are modes now."""
    from gender.config import RunRecord, TrainConfig, run_config

    old = {"model": "cnn7", "flags": {"data": "faces", "model": "cnn7", "epochs": 30,
                                      "lr": None, "resume": None, "demo": False}}  # fmt: skip
    config = run_config(RunRecord.from_dict(old, "run.json"))
    assert config.data == ["faces"] and config.epochs == 30 and config.task == "face"
    assert config.lr is None and config.cache_views == TrainConfig.cache_views
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_flags_become_settings_by_their_field_names():
    """Every TrainConfig field is a train flag of the same name (none left at a silent
    default); flags that are no setting (--devices, --verbose) stay out; adapt's fixed recipe
    (no flag) keeps its defaults."""
    import dataclasses

    from gender.adapt import AdaptConfig
    from gender.cli.train import build_parser, train_config
    from gender.config import TrainConfig, config_from_flags

    args = build_parser().parse_args(["train", "--data", "d", "--lr", "0.01", "--devices", "cpu"])
    assert all(hasattr(args, f.name) for f in dataclasses.fields(TrainConfig))
    config = train_config(args)
    assert config.data == ["d"] and config.lr == 0.01 and config.epochs == TrainConfig.epochs
    args = build_parser().parse_args(["adapt", "--data", "d", "--epochs", "3"])
    adapt = config_from_flags(AdaptConfig, args)
    assert adapt.epochs == 3 and adapt.batch_size == AdaptConfig.batch_size


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the demo writes data/demo_synthetic under the working folder
    assert gender_train.main(["--demo", "--out", str(tmp_path / "weights")]) == 0
    out = capsys.readouterr().out
    assert "images correctly predicted among" in out
    assert re.search(r": woman \(P\(woman\) [01]\.\d{3} >= threshold 0\.500; ", out), out
    assert (tmp_path / "data" / "demo_synthetic" / "man").is_dir()
    (run,) = run_dirs(tmp_path / "weights")
    assert (run / "best.keras").is_file()


@pytest.mark.slow
def test_train_mobilenetv2_two_phases_with_local_imagenet_weights(image_tree, tmp_path, capsys):
    weights = SHARED_WEIGHTS / "mobilenet_v2_imagenet_notop.weights.h5"
    if not weights.is_file():
        pytest.skip(f"{weights} is absent")
    out = tmp_path / "runs"
    argv = ["--data", str(image_tree), "--model", "mobilenetv2", "--image-size", "32",
            "--backbone-weights", str(weights), "--epochs", "2", "--head-epochs", "1",
            "--trainable-blocks", "1", "--batch-size", "8", "--out", str(out)]  # fmt: skip
    assert gender_train.main(argv) == 0
    (run,) = run_dirs(out)
    assert [row["epoch"] for row in read_history(run)] == ["1", "2"]
    info = json.loads((run / "run.json").read_text())
    assert info["model"] == "mobilenetv2" and info["epochs_done"] == 2
    assert len(info["phases"]) == 2  # head alone, then the top block fine-tunes
    capsys.readouterr()
    image = sorted((image_tree / "woman").iterdir())[0]
    assert gender_single_predict.main([str(image), str(run / "best.keras"), "--no-detect"]) == 0
    assert LINE.match(capsys.readouterr().out.strip())


# --- gender_mAP.py ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluation(trained_run, tmp_path_factory):
    """One evaluation of the trained run on its val.txt with --json, --plots and --errors."""
    folder = tmp_path_factory.mktemp("evaluation")
    argv = [str(trained_run / "val.txt"), str(trained_run / "best.keras"),
            "--json", str(folder / "report.json"), "--plots", str(folder / "plots"),
            "--errors", str(folder / "errors.csv")]  # fmt: skip
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = gender_mAP.main(argv)
    assert status == 0, stderr.getvalue()
    report = json.loads((folder / "report.json").read_text())
    return {"folder": folder, "stdout": stdout.getvalue(), "report": report}


def test_map_report_text(evaluation, trained_run):
    text = evaluation["stdout"]
    n = len(read_truth_table(trained_run / "val.txt"))
    assert f"images correctly predicted among {n} evaluation images" in text
    assert re.search(r"^mAP\(%\): \d+\.\d\d$", text, re.M)
    assert re.search(r"^AP man\(%\): ", text, re.M) and re.search(r"^AP woman\(%\): ", text, re.M)
    for key in ("woman==>man", "man==>woman", "man==>man", "woman==>woman"):
        assert re.search(rf"^{key}\s+\d\.\d{{3}}$", text, re.M), key


def test_map_json(evaluation, trained_run):
    report = evaluation["report"]
    for key in ("n", "correct", "accuracy", "ap", "map", "confusion_rates", "precision", "recall",
                "f1", "confusion_matrix"):  # fmt: skip
        assert key in report, key
    val = read_truth_table(trained_run / "val.txt")
    assert report["n"] == len(val)
    assert set(report["ap"]) == {"man", "woman"}
    assert report["map"] == pytest.approx((report["ap"]["man"] + report["ap"]["woman"]) / 2)
    matrix = np.array(report["confusion_matrix"])
    assert matrix.sum() == report["n"]
    assert matrix.sum(axis=1).tolist() == [val.counts()["man"], val.counts()["woman"]]
    assert np.trace(matrix) == report["correct"]
    assert report["accuracy"] == pytest.approx(report["correct"] / report["n"])
    assert report["confusion_rates"]["woman==>man"] == pytest.approx(matrix[1, 0] / matrix[1].sum())
    assert report["model"] == "cnn3"


def test_map_numbers_match_the_model(evaluation, trained_run):
    # Recompute P(woman) here with Keras and the same decoding: the report must agree, which
    # also pins the label order (AP woman is computed on P(woman), not on P(man)).
    import keras

    from gender.images import load_image
    from gender.metrics import mean_ap

    val = read_truth_table(trained_run / "val.txt")
    model = keras.saving.load_model(trained_run / "best.keras", compile=False)
    images = np.stack([load_image(p, (IMAGE_SIZE, IMAGE_SIZE)) for p in val.paths])
    p_woman = model.predict(images, verbose=0).ravel()
    ap, map_ = mean_ap(val.labels, p_woman)
    report = evaluation["report"]
    assert report["ap"]["woman"] == pytest.approx(ap["woman"], abs=1e-6)
    assert report["ap"]["man"] == pytest.approx(ap["man"], abs=1e-6)
    assert report["correct"] == int(((p_woman >= 0.5).astype(int) == val.labels).sum())


def test_map_plots(evaluation):
    plots = evaluation["folder"] / "plots"
    pngs = sorted(p.name for p in plots.iterdir())
    assert pngs == ["confusion_matrix.png", "pr_curves.png"]
    for name in pngs:
        assert (plots / name).read_bytes().startswith(b"\x89PNG")


def test_map_errors_csv(evaluation):
    rows = read_csv(evaluation["folder"] / "errors.csv")
    assert rows[0] == ["path", "true", "predicted", "p_woman", "threshold", "margin"]
    report = evaluation["report"]
    assert len(rows) - 1 == report["n"] - report["correct"]
    for path, true, predicted, p, threshold, margin in rows[1:]:
        assert true != predicted and {true, predicted} == {"man", "woman"}
        assert (float(p) >= float(threshold)) == (predicted == "woman")
        assert float(margin) == pytest.approx(abs(float(p) - float(threshold)), abs=2e-4)
        assert f"/{true}/" in path
    margins = [float(row[-1]) for row in rows[1:]]
    assert margins == sorted(margins, reverse=True)  # the most wrong first


def test_map_on_a_folder_with_a_run_folder_as_weights(trained_run, image_tree, capsys):
    assert gender_mAP.main([str(image_tree), str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert f"images correctly predicted among {2 * PER_CLASS} evaluation images" in out


def test_map_skips_an_unreadable_image(trained_run, data_copy, capsys, tmp_path):
    write_truncated_jpeg(data_copy / "woman" / "099_0_cut.jpg")
    report_path = tmp_path / "r.json"
    argv = [str(data_copy), str(trained_run / "best.keras"), "--json", str(report_path)]
    assert gender_mAP.main(argv) == 0
    captured = capsys.readouterr()
    assert "099_0_cut.jpg" in captured.err
    report = json.loads(report_path.read_text())
    assert report["n"] == 2 * PER_CLASS and report["skipped_unreadable"] == 1


def test_map_missing_weights(image_tree, tmp_path, capsys):
    missing = tmp_path / "gone.keras"
    assert gender_mAP.main([str(image_tree), str(missing)]) == 2
    assert "gone.keras" in error_line(capsys.readouterr().err)


def test_map_text_file_renamed_keras(image_tree, tmp_path, capsys):
    fake = tmp_path / "fake.keras"
    fake.write_text("definitely not a zip file\n")
    assert gender_mAP.main([str(image_tree), str(fake)]) == 2
    line = error_line(capsys.readouterr().err)
    assert str(fake) in line and "not a" in line.split(str(fake), 1)[1]


def test_map_image_size_mismatch(trained_run, image_tree, capsys):
    argv = [str(image_tree), str(trained_run / "best.keras"), "--image-size", "64"]
    assert gender_mAP.main(argv) == 2
    line = error_line(capsys.readouterr().err)
    assert "64x64" in line and f"{IMAGE_SIZE}x{IMAGE_SIZE}" in line


def test_map_missing_dataset(trained_run, tmp_path, capsys):
    missing = tmp_path / "no_val_here"
    assert gender_mAP.main([str(missing), str(trained_run / "best.keras")]) == 2
    assert "no_val_here" in error_line(capsys.readouterr().err)


# --- gender_single_predict.py -------------------------------------------------------------------

LINE = re.compile(r"^(?P<path>.+): (?P<label>man|woman) \(P\(woman\) (?P<p>[01]\.\d{3}) "
                  r"(?P<sign>>=|<) threshold (?P<threshold>[01]\.\d{3}); "
                  r"(?P<model>.+), (?P<backend>int8|float32|keras)\)$")  # fmt: skip


def test_predict_one_image(trained_run, image_tree, capsys):
    # The synthetic images hold no face: classified whole (tests/test_faces.py detects faces).
    image = sorted((image_tree / "woman").iterdir())[0]
    argv = [str(image), str(trained_run / "best.keras"), "--no-detect"]
    assert gender_single_predict.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    match = LINE.match(out[0])
    assert match, out[0]
    assert match["path"] == str(image)
    p = float(match["p"])
    assert match["label"] == ("woman" if p >= 0.5 else "man")
    assert match["sign"] == (">=" if p >= 0.5 else "<")
    # the model, its threshold and the backend are on the line: a trained run has no stored
    # threshold (0.5); this one was trained with --no-export, so Keras runs it
    assert match["threshold"] == "0.500"
    assert match["model"] == str(trained_run / "best.keras") and match["backend"] == "keras"


def test_predict_threshold_flag_decides(trained_run, image_tree, capsys):
    """--threshold moves the decision and is shown; without it the stored one is."""
    image = sorted((image_tree / "woman").iterdir())[0]
    argv = [str(image), "--weights", str(trained_run), "--no-detect"]
    assert gender_single_predict.main(argv) == 0
    p = float(LINE.match(capsys.readouterr().out.strip())["p"])
    for threshold, label in ((max(p - 0.01, 0.001), "woman"), (min(p + 0.01, 0.999), "man")):
        assert gender_single_predict.main([*argv, "--threshold", f"{threshold:.4f}"]) == 0
        match = LINE.match(capsys.readouterr().out.strip())
        assert match["label"] == label and float(match["threshold"]) == pytest.approx(
            threshold, abs=6e-4
        )
    with pytest.raises(SystemExit) as refused:
        gender_single_predict.main([*argv, "--threshold", "nan"])
    assert refused.value.code == 2


def test_predict_same_probability_as_the_evaluator(trained_run, image_tree, capsys):
    import keras

    from gender.images import load_image

    image = sorted((image_tree / "man").iterdir())[0]
    argv = [str(image), "--weights", str(trained_run), "--no-detect"]
    assert gender_single_predict.main(argv) == 0
    p = float(LINE.match(capsys.readouterr().out.strip())["p"])
    model = keras.saving.load_model(trained_run / "best.keras", compile=False)
    expected = model.predict(load_image(image, (IMAGE_SIZE, IMAGE_SIZE))[None], verbose=0)[0, 0]
    assert p == pytest.approx(expected, abs=6e-4)


def test_predict_folder_writes_csv_to_stdout(trained_run, image_tree, capsys):
    assert gender_single_predict.main([str(image_tree), str(trained_run / "best.keras")]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert rows[0] == ["path", "label", "probability", "p_woman"]
    body = rows[1:]
    assert len(body) == 2 * PER_CLASS
    assert [r[0] for r in body] == sorted(str(p) for p in image_tree.rglob("*.png"))
    for _, label, probability, p in body:
        assert label == ("woman" if float(p) >= 0.5 else "man")
        assert float(probability) == pytest.approx(max(float(p), 1 - float(p)), abs=2e-4)


def test_predict_csv_file_and_a_bad_image_among_several(trained_run, data_copy, tmp_path, capsys):
    bad = write_truncated_jpeg(data_copy / "man" / "000_9_cut.jpg")
    good = sorted((data_copy / "woman").glob("*.png"))[:2]
    out_csv = tmp_path / "predictions.csv"
    argv = [str(good[0]), str(bad), str(good[1]), "--weights", str(trained_run / "best.keras"),
            "--csv", str(out_csv), "--no-detect"]  # fmt: skip
    assert gender_single_predict.main(argv) == 1  # some images could not be read
    captured = capsys.readouterr()
    assert "000_9_cut.jpg" in captured.err
    rows = read_csv(out_csv)
    assert [r[0] for r in rows[1:]] == [str(good[0]), str(good[1])]


def test_predict_missing_image(trained_run, tmp_path, capsys):
    missing = tmp_path / "nobody.jpg"
    assert gender_single_predict.main([str(missing), str(trained_run / "best.keras")]) == 2
    assert "nobody.jpg" in error_line(capsys.readouterr().err)


def test_predict_truncated_single_image(trained_run, tmp_path, capsys):
    cut = write_truncated_jpeg(tmp_path / "half.jpg")
    assert gender_single_predict.main([str(cut), str(trained_run / "best.keras")]) == 2
    line = error_line(capsys.readouterr().err)
    assert str(cut) in line and "truncated" in line.split(str(cut), 1)[1]


def test_predict_missing_weights(image_tree, tmp_path, capsys):
    image = sorted((image_tree / "man").iterdir())[0]
    missing = tmp_path / "nowhere" / "best.keras"
    assert gender_single_predict.main([str(image), str(missing)]) == 2
    assert str(missing) in error_line(capsys.readouterr().err)


def test_predict_text_file_renamed_keras(image_tree, tmp_path, capsys):
    image = sorted((image_tree / "man").iterdir())[0]
    fake = tmp_path / "model.keras"
    fake.write_text("hello\n")
    assert gender_single_predict.main([str(image), str(fake)]) == 2
    assert "model.keras" in error_line(capsys.readouterr().err)


def test_predict_image_size_mismatch(trained_run, image_tree, capsys):
    image = sorted((image_tree / "man").iterdir())[0]
    argv = [str(image), str(trained_run / "best.keras"), "--image-size", "128x64"]
    assert gender_single_predict.main(argv) == 2
    assert "128x64" in error_line(capsys.readouterr().err)


def test_predict_empty_folder(trained_run, tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    assert gender_single_predict.main([str(tmp_path / "nothing"), str(trained_run)]) == 2
    assert "nothing" in error_line(capsys.readouterr().err)


# --- dataset.py ---------------------------------------------------------------------------------


def test_dataset_truth_writes_txt_and_npy(data_copy, capsys):
    assert dataset.main([str(data_copy)]) == 0  # the seeds' `python dataset.py DIR`
    txt, npy = data_copy / "ground_truth.txt", data_copy / "ground_truth.npy"
    assert txt.is_file() and npy.is_file()
    table = np.load(npy, allow_pickle=False)
    assert table.dtype.names == ("path", "label")
    assert len(table) == 2 * PER_CLASS
    for path, label in zip(table["path"], table["label"]):
        assert int(label) == (1 if Path(path).parent.name == "woman" else 0)
    back = read_truth_table(txt)
    assert [Path(p).resolve() for p in back.paths] == [Path(p).resolve() for p in table["path"]]
    np.testing.assert_array_equal(back.labels, table["label"])
    assert f"{2 * PER_CLASS} images" in capsys.readouterr().out


def test_dataset_truth_table_feeds_the_evaluator(data_copy, trained_run, capsys):
    assert dataset.main(["truth", str(data_copy)]) == 0
    capsys.readouterr()
    table = str(data_copy / "ground_truth.txt")
    assert gender_mAP.main([table, str(trained_run / "best.keras")]) == 0
    assert f"among {2 * PER_CLASS} evaluation images" in capsys.readouterr().out


def test_dataset_split_by_person_links_and_never_moves(image_tree, tmp_path, capsys):
    before = tree_digest(image_tree)
    out = tmp_path / "split"
    argv = ["split", str(image_tree), "--out", str(out), "--val", "0.25", "--by-person"]
    assert dataset.main(argv) == 0
    assert tree_digest(image_tree) == before
    assert "persons on both sides: 0" in capsys.readouterr().out
    parts = {split: sorted((out / split).rglob("*.png")) for split in ("train", "val")}
    assert len(parts["train"]) + len(parts["val"]) == 2 * PER_CLASS
    for split, files in parts.items():
        assert {f.parent.name for f in files} == {"man", "woman"}, split
        for f in files:
            source = image_tree / f.parent.name / f.name
            assert os.path.samefile(f, source)  # a link to the same file, not a copy
    train_ids = set(person_ids(parts["train"]))
    assert train_ids and not train_ids & set(person_ids(parts["val"]))
    # the split folder is a train/val layout the trainer reads as is
    from gender.data import find_splits

    assert set(find_splits(out)) == {"train", "val"}


def test_dataset_split_copy(image_tree, tmp_path, capsys):
    out = tmp_path / "split"
    assert dataset.main(["split", str(image_tree), "--out", str(out), "--copy"]) == 0
    files = sorted(out.rglob("*.png"))
    assert len(files) == 2 * PER_CLASS
    f = files[0]
    assert not os.path.samefile(f, image_tree / f.parent.name / f.name)


def test_dataset_split_refuses_a_non_empty_target(image_tree, tmp_path, capsys):
    out = tmp_path / "split"
    (out / "train").mkdir(parents=True)
    (out / "train" / "keep_me.txt").write_text("mine")
    assert dataset.main(["split", str(image_tree), "--out", str(out)]) == 2
    assert "train" in error_line(capsys.readouterr().err)
    assert (out / "train" / "keep_me.txt").read_text() == "mine"


def test_dataset_split_refuses_out_inside_the_data(data_copy, capsys):
    before = tree_digest(data_copy)
    assert dataset.main(["split", str(data_copy), "--out", str(data_copy / "split")]) == 2
    error_line(capsys.readouterr().err)
    assert tree_digest(data_copy) == before


def test_dataset_check_clean(image_tree, capsys):
    assert dataset.main(["check", str(image_tree)]) == 0
    out = capsys.readouterr().out
    assert f"{2 * PER_CLASS} files" in out and "0 with problems" in out


def test_dataset_check_reports_bad_files(data_copy, capsys):
    write_truncated_jpeg(data_copy / "woman" / "010_9_cut.jpg")
    (data_copy / "man" / "000_9_text.png").write_text("text")
    (data_copy / "man" / "000_9_empty.jpg").write_bytes(b"")
    before = tree_digest(data_copy)
    assert dataset.main(["check", str(data_copy)]) == 1
    out = capsys.readouterr().out
    bad = [line for line in out.splitlines() if line.startswith("bad:")]
    assert len(bad) == 3
    for name in ("010_9_cut.jpg", "000_9_text.png", "000_9_empty.jpg"):
        assert any(name in line for line in bad), name
    assert "3 with problems" in out
    assert tree_digest(data_copy) == before  # check never deletes or fixes anything


def test_dataset_missing_folder(tmp_path, capsys):
    assert dataset.main(["check", str(tmp_path / "absent")]) == 2
    assert "absent" in error_line(capsys.readouterr().err)


def test_train_help_loads_no_tensorflow():
    """--help lists the models and augmentations without the ~8 s TensorFlow import."""
    code = (
        "import sys, contextlib, io, gender_train\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "    gender_train.main(['--help'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('HEAVY', heavy[:5], 'mobilenetv2' in out.getvalue(), 'loose' in out.getvalue())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY [] True True" in result.stdout, result.stdout
