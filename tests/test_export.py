"""Export (TFLite, SavedModel) round trip and the TensorFlow-free fast predict path.

The exported model and the LiteRT path must give the Keras model's answers (to 1e-4) on real
images: a few from ../shared/data/faces_web when present, else the synthetic tree.
"""

import csv
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
from conftest import SHARED_DATA, SHARED_WEIGHTS, error_line, predict_in_fresh_process

import gender_mAP
import gender_single_predict
import gender_train
from gender.data import Samples, list_folder

pytest.importorskip("ai_edge_litert")

TOLERANCE = 1e-4
REAL_PER_CLASS = 8


@pytest.fixture(scope="module")
def eval_images(image_tree, tmp_path_factory):
    """A man/woman folder: links to a few real face photos if ../shared has them, else synthetic."""
    source = SHARED_DATA / "faces_web"
    if not source.is_dir():
        return image_tree
    root = tmp_path_factory.mktemp("real") / "faces"
    for name in ("man", "woman"):
        (root / name).mkdir(parents=True)
        for path in sorted((source / name).iterdir())[:REAL_PER_CLASS]:
            os.symlink(path, root / name / path.name)
    return root


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """A copy of the trained run's best.keras + run.json, exported beside itself by the CLI."""
    folder = tmp_path_factory.mktemp("export")
    for name in ("best.keras", "run.json"):
        shutil.copy(trained_run / name, folder / name)
    assert gender_train.main(["--export", str(folder / "best.keras")]) == 0
    return folder


def test_export_writes_the_three_files(exported):
    assert (exported / "best.tflite").read_bytes()[4:8] == b"TFL3"
    assert (exported / "best_saved_model" / "saved_model.pb").is_file()
    meta = json.loads((exported / "best.export.json").read_text())
    assert meta["class_names"] == ["man", "woman"]
    assert meta["model"] == "cnn3" and meta["image_size"] == [32, 32]
    assert meta["input_dtype"] == "float32" and meta["input_range"] == [0, 255]
    assert not [p.name for p in exported.iterdir() if p.name.startswith(".")]  # no temp files


def test_export_round_trip_same_outputs(exported, eval_images):
    """Keras, TFLite (LiteRT) and SavedModel give the same P(woman) on the same decoded pixels."""
    import tensorflow as tf

    from gender.data import decode_images
    from gender.lite import load_lite
    from gender.predictor import load_trained

    keras_model, info = load_trained(exported / "best.keras")
    images, _ = decode_images(list_folder(eval_images), info.image_size)
    expected = keras_model.predict(images, verbose=0)
    lite_model, _ = load_lite(exported / "best.keras")
    served = tf.saved_model.load(str(exported / "best_saved_model"))
    from_lite = lite_model.predict(images, batch_size=5)  # uneven batches: resizing works
    from_saved = served.serve(tf.constant(images, tf.float32)).numpy()
    assert from_lite.shape == from_saved.shape == expected.shape == (len(images), 1)
    np.testing.assert_allclose(from_lite, expected, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(from_saved, expected, atol=TOLERANCE, rtol=0)


def test_fast_path_agrees_with_keras_path(exported, eval_images):
    """Predictor picks LiteRT when the export is there; its answers are Keras' to 1e-4."""
    from gender.predictor import Predictor

    samples = list_folder(eval_images)
    results = {}
    for backend in ("lite", "keras"):
        predictor = Predictor.load(exported / "best.keras", backend=backend)
        assert predictor.backend == backend
        results[backend] = predictor.folder(samples).p_woman
    assert Predictor.load(exported / "best.keras").backend == "int8"  # auto: both exports here
    np.testing.assert_allclose(results["lite"], results["keras"], atol=TOLERANCE, rtol=0)


def test_cli_fast_and_keras_paths_print_the_same(exported, eval_images, capsys):
    rows = {}
    for backend in ("lite", "keras"):
        argv = [str(eval_images), "--weights", str(exported / "best.keras"), "--backend", backend]
        assert gender_single_predict.main(argv) == 0
        rows[backend] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["path"] for r in rows["lite"]] == [r["path"] for r in rows["keras"]]
    for lite, keras in zip(rows["lite"], rows["keras"]):
        # printed to 4 decimals: one unit of rounding on top of the 1e-4 agreement
        assert abs(float(lite["p_woman"]) - float(keras["p_woman"])) <= 2e-4
        if abs(float(keras["p_woman"]) - 0.5) > 2e-4:
            assert lite["label"] == keras["label"]


def test_lite_cli_imports_no_tensorflow(exported, eval_images):
    """A single prediction through the fast path never imports TensorFlow or Keras."""
    image = next((eval_images / "woman").iterdir())
    result = predict_in_fresh_process([image, exported / "best.keras", "--no-detect"])
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
    assert "woman" in result.stdout or "man" in result.stdout
    assert "XNNPACK" not in result.stderr  # the runtime's banner is not shown to users


def test_keras_backend_without_export_still_works(trained_run, eval_images, capsys):
    image = next((eval_images / "man").iterdir())
    argv = [str(image), str(trained_run / "best.keras"), "--no-detect"]  # backends, not faces
    assert gender_single_predict.main(argv) == 0
    assert "P(woman)" in capsys.readouterr().out


def test_lite_backend_without_export_is_one_error_line(trained_run, eval_images, capsys):
    image = next((eval_images / "man").iterdir())
    argv = [str(image), str(trained_run / "best.keras"), "--backend", "lite"]
    assert gender_single_predict.main(argv) == 2
    assert " export " in error_line(capsys.readouterr().err)


def test_export_of_a_missing_file_is_one_error_line(tmp_path, capsys):
    assert gender_train.main(["--export", str(tmp_path / "nope.keras")]) == 2
    assert "not found" in error_line(capsys.readouterr().err)


def test_export_to_out_folder(trained_run, tmp_path, capsys):
    out = tmp_path / "exports"
    assert gender_train.main(["--export", str(trained_run), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "best.export.json", "best.int8.tflite", "best.tflite", "best_saved_model"]  # fmt: skip
    assert not (trained_run / "best.tflite").exists()  # the run folder is left alone


def test_int8_backend_answers_with_float32_near_the_threshold(exported, eval_images, monkeypatch):
    """The int8 backend keeps int8's P(woman) far from the threshold and takes float32's within
    RECHECK_MARGIN of it, where int8's error could change the answer."""
    from gender import lite
    from gender.data import decode_images
    from gender.predictor import Predictor

    weights = exported / "best.keras"
    checked = Predictor.load(weights, backend="int8")
    images, _ = decode_images(list_folder(eval_images), checked.size)
    float32 = Predictor.load(weights, backend="lite").classify(images)
    int8_only = lite.load_lite(weights, int8=True)[0].predict(images).ravel()
    assert not np.allclose(int8_only, float32, atol=1e-6, rtol=0)  # else this shows nothing
    near = np.abs(int8_only - checked.threshold) < lite.RECHECK_MARGIN
    answers = checked.classify(images)
    np.testing.assert_allclose(answers[near], float32[near], atol=1e-6, rtol=0)
    np.testing.assert_allclose(answers[~near], int8_only[~near], atol=1e-6, rtol=0)
    monkeypatch.setattr(lite, "RECHECK_MARGIN", 1.0)  # every image is near: float32 throughout
    np.testing.assert_allclose(checked.classify(images), float32, atol=1e-6, rtol=0)


def test_map_threshold_flag_centres_the_int8_recheck(exported, eval_images, tmp_path, monkeypatch):
    """gender_mAP.py --threshold T: the int8 backend re-checks around T, the threshold the
    report uses, not around the model's own."""
    from gender.predictor import Predictor

    centres = []
    classify = Predictor.classify

    def recording(self, images, batch_size=64):
        centres.append(self.threshold)
        return classify(self, images, batch_size)

    monkeypatch.setattr(Predictor, "classify", recording)
    report = tmp_path / "report.json"
    argv = [str(eval_images), str(exported / "best.keras"), "--backend", "int8"]
    assert gender_mAP.main([*argv, "--threshold", "0.3", "--json", str(report)]) == 0
    assert centres and set(centres) == {0.3}
    assert json.loads(report.read_text())["threshold"] == 0.3


def test_auto_backend_is_float32_without_an_int8_export(exported, tmp_path):
    from gender.predictor import Predictor

    for name in ("best.keras", "run.json", "best.tflite", "best.export.json"):
        shutil.copy(exported / name, tmp_path / name)  # all but best.int8.tflite
    assert Predictor.load(tmp_path / "best.keras").backend == "lite"


def test_int8_backend_without_the_float32_export_is_one_error_line(
    exported, eval_images, tmp_path, capsys
):
    for name in ("best.keras", "run.json", "best.int8.tflite", "best.export.json"):
        shutil.copy(exported / name, tmp_path / name)  # all but best.tflite
    status = gender_mAP.main([str(eval_images), str(tmp_path / "best.keras"), "--backend", "int8"])
    assert status == 2
    assert "no float32 .tflite" in error_line(capsys.readouterr().err)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn5", "cnn7", "vgg16", "mobilenetv2"])
def test_every_model_exports_to_plain_litert(name, eval_images, tmp_path):
    """Every registry model converts with built-in ops only and matches Keras on real images."""
    from gender.config import RunRecord
    from gender.data import decode_images
    from gender.export import export_tflite
    from gender.lite import LiteModel
    from gender.models import create_model

    backbone = SHARED_WEIGHTS / f"{name}_imagenet_notop.weights.h5"
    if name == "mobilenetv2":
        backbone = SHARED_WEIGHTS / "mobilenet_v2_imagenet_notop.weights.h5"
    model = create_model(name, backbone_weights=str(backbone) if backbone.is_file() else None)
    export_tflite(model, tmp_path / "m.tflite")
    size = model.input_shape[1:3]
    images, _ = decode_images(Samples(list_folder(eval_images).paths[:8], np.zeros(8)), size)
    lite = LiteModel(tmp_path / "m.tflite", RunRecord(image_size=list(size)))
    np.testing.assert_allclose(
        lite.predict(images), model.predict(images, verbose=0), atol=TOLERANCE, rtol=0
    )


def test_a_tflite_file_as_weights(exported, eval_images, capsys):
    image = next((eval_images / "woman").iterdir())
    argv = [str(image), str(exported / "best.tflite"), "--no-detect"]  # backends, not faces
    assert gender_single_predict.main(argv) == 0
    assert "P(woman)" in capsys.readouterr().out


def test_map_report_is_the_same_with_either_backend(exported, eval_images, tmp_path, capsys):
    import gender_mAP

    reports = {}
    for backend in ("lite", "keras"):
        out = tmp_path / f"{backend}.json"
        argv = [str(eval_images), str(exported / "best.keras"), "--backend", backend]
        assert gender_mAP.main([*argv, "--json", str(out)]) == 0
        reports[backend] = json.loads(out.read_text())
    capsys.readouterr()
    assert reports["lite"]["backend"] == "float32" and reports["keras"]["backend"] == "keras"
    assert reports["lite"]["n"] == reports["keras"]["n"]
    assert reports["lite"]["map"] == pytest.approx(reports["keras"]["map"], abs=1e-3)


def test_bundle_makes_a_default_model_from_a_run(trained_run, eval_images, tmp_path, capsys):
    out = tmp_path / "pretrained"
    assert gender_train.main(["--bundle", str(trained_run), "--out", str(out)]) == 0
    task = json.loads((trained_run / "run.json").read_text())["task"]
    info = json.loads((out / f"{task}.json").read_text())
    assert info["task"] == task and info["bundled_from"] == str(trained_run)
    assert (out / f"{task}.keras").stat().st_mode & 0o044, "bundled files must be readable by all"
    image = str(sorted((eval_images / "woman").iterdir())[0])
    capsys.readouterr()
    outputs = []
    bundled = out / f"{task}.keras"
    runs = [(trained_run / "best.keras", "keras"), (bundled, "keras"), (bundled, "lite")]
    for weights, backend in runs:
        argv = [image, str(weights), "--backend", backend, "--no-detect"]
        assert gender_single_predict.main(argv) == 0
        outputs.append(capsys.readouterr().out)
    # the same answers; each line names its own weights
    answers = [re.sub(r"; [^;\n]*, \w+\)$", ")", text, flags=re.M) for text in outputs]
    assert answers[0] == answers[1] == answers[2]


def test_bundle_of_a_folder_that_is_no_run_is_one_error_line(tmp_path, capsys):
    assert gender_train.main(["--bundle", str(tmp_path / "nothing")]) == 2
    assert "not a run folder" in error_line(capsys.readouterr().err)


@pytest.fixture(scope="module")
def two_epoch_run(trained_run, tmp_path_factory):
    """A run folder with two different epoch checkpoints (the second one's weights shifted)."""
    import keras

    import gender.models.layers  # noqa: F401  registers the custom layers

    folder = tmp_path_factory.mktemp("two_epochs")
    info = json.loads((trained_run / "run.json").read_text())
    info["phases"] = [{"name": "train", "last_epoch": 2, "learning_rate": 1e-3}]
    (folder / "run.json").write_text(json.dumps(info))
    model = keras.saving.load_model(trained_run / "epoch_001.keras", compile=False)
    model.save(folder / "epoch_001.keras")
    model.set_weights([w + 0.5 for w in model.get_weights()])
    model.save(folder / "epoch_002.keras")
    shutil.copy(folder / "epoch_002.keras", folder / "best.keras")
    return folder


def test_bundle_average_epochs_is_the_mean_of_the_checkpoints(two_epoch_run, tmp_path, capsys):
    import keras

    out = tmp_path / "pretrained"
    argv = ["--bundle", str(two_epoch_run), "--average-epochs", "1,2", "--out", str(out)]
    assert gender_train.main(argv) == 0
    task = json.loads((two_epoch_run / "run.json").read_text())["task"]
    assert json.loads((out / f"{task}.json").read_text())["averaged_epochs"] == [1, 2]
    first, second, bundled = (
        keras.saving.load_model(path, compile=False).get_weights()
        for path in (two_epoch_run / "epoch_001.keras", two_epoch_run / "epoch_002.keras",
                     out / f"{task}.keras")
    )  # fmt: skip
    for a, b, mean in zip(first, second, bundled):
        np.testing.assert_allclose(mean, (a + b) / 2, atol=1e-6)
    assert any(not np.allclose(a, mean) for a, mean in zip(first, bundled))


def test_bundle_average_refuses_epochs_of_different_phases(two_epoch_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(two_epoch_run, run)
    info = json.loads((run / "run.json").read_text())
    info["phases"] = [{"name": "head", "last_epoch": 1}, {"name": "fine-tune", "last_epoch": 2}]
    (run / "run.json").write_text(json.dumps(info))
    argv = ["--bundle", str(run), "--average-epochs", "1,2", "--out", str(tmp_path / "out")]
    assert gender_train.main(argv) == 2
    assert "not all from one training phase" in error_line(capsys.readouterr().err)


def test_bundle_average_of_a_missing_epoch_is_one_error_line(two_epoch_run, tmp_path, capsys):
    argv = ["--bundle", str(two_epoch_run), "--average-epochs", "2,7", "--out", str(tmp_path)]
    assert gender_train.main(argv) == 2
    assert "epoch_007.keras: no such checkpoint" in error_line(capsys.readouterr().err)


@pytest.fixture(scope="module")
def other_network(tmp_path_factory):
    """A second face model of another network and input size (cnn5, 40x40, random weights)."""
    from gender.models import create_model

    folder = tmp_path_factory.mktemp("other")
    create_model("cnn5", image_size=(40, 40)).save(folder / "other.keras")
    info = {"model": "cnn5", "task": "face", "class_names": ["man", "woman"]}
    info["image_size"] = [40, 40]
    (folder / "other.json").write_text(json.dumps(info))
    return folder / "other.keras"


def test_bundle_average_with_is_the_mean_of_two_networks(
    trained_run, other_network, tmp_path, capsys
):
    import keras

    from gender.explain import grad_cam
    from gender.models.ensemble import members

    out = tmp_path / "pretrained"
    argv = ["bundle", str(trained_run), "--average-with", str(other_network), "--out", str(out)]
    assert gender_train.main(argv) == 0
    info = json.loads((out / "face.json").read_text())
    assert info["averaged_with"]["model"] == "cnn5" and info["image_size"] == [40, 40]
    bundled = keras.saving.load_model(out / "face.keras", compile=False)
    first = keras.saving.load_model(trained_run / "best.keras", compile=False)
    second = keras.saving.load_model(other_network, compile=False)
    assert [m.name for m in members(bundled)] == [first.name, second.name]
    images = np.random.default_rng(0).uniform(0, 255, (4, 40, 40, 3)).astype("float32")
    small = keras.layers.Resizing(32, 32, interpolation="bilinear")(images)
    mean = (first.predict(small, verbose=0) + second.predict(images, verbose=0)) / 2
    np.testing.assert_allclose(bundled.predict(images, verbose=0), mean, atol=1e-5)
    heatmap, p_woman = grad_cam(bundled, images[0].astype("uint8"))
    assert heatmap.shape == (40, 40) and 0 <= heatmap.min() <= heatmap.max() <= 1
    assert p_woman == pytest.approx(float(bundled.predict(images[:1].astype("uint8"))[0, 0]), 1e-4)
    # adapt fine-tunes one network: an average is refused in one line naming the way out
    argv = ["adapt", "--data", str(trained_run), "--weights", str(out / "face.keras")]
    assert gender_train.main(argv) == 2
    assert "pass --weights face-fast" in error_line(capsys.readouterr().err)


def test_bundle_average_with_a_pedestrian_model_is_one_error_line(
    trained_run, other_network, tmp_path, capsys
):
    other = tmp_path / "ped.keras"
    shutil.copy(other_network, other)
    info = json.loads(other_network.with_suffix(".json").read_text())
    (tmp_path / "ped.json").write_text(json.dumps({**info, "task": "pedestrian"}))
    argv = ["bundle", str(trained_run), "--average-with", str(other), "--out", str(tmp_path / "o")]
    assert gender_train.main(argv) == 2
    assert "a pedestrian model; it cannot be averaged" in error_line(capsys.readouterr().err)


def test_average_epochs_needs_bundle(capsys):
    with pytest.raises(SystemExit) as exit_info:
        gender_train.main(["--average-epochs", "1,2"])
    assert exit_info.value.code == 2
    assert "--average-epochs goes with --bundle" in capsys.readouterr().err


def test_bundle_threshold_val_is_stored_and_used_by_default(trained_run, tmp_path, capsys):
    from gender.data import read_truth_table
    from gender.metrics import equal_error_threshold
    from gender.predictor import Predictor

    out = tmp_path / "pretrained"
    argv = ["bundle", str(trained_run), "--out", str(out), "--threshold", "val"]
    assert gender_train.main(argv) == 0
    task = json.loads((trained_run / "run.json").read_text())["task"]
    info = json.loads((out / f"{task}.json").read_text())
    assert "val.txt" in info["threshold_source"]
    exported = json.loads((out / f"{task}.export.json").read_text())
    assert exported["threshold"] == info["threshold"]
    # with it, the band that leaves the least sure 10% of val.txt unanswered (--uncertain model)
    low, high = info["uncertain_band"]
    assert low <= info["threshold"] <= high and exported["uncertain_band"] == [low, high]
    argv = [str(trained_run / "val.txt"), str(out / f"{task}.keras"), "--uncertain", "model",
            "--json", str(tmp_path / "band.json")]  # fmt: skip
    assert gender_mAP.main(argv) == 0
    band_report = json.loads((tmp_path / "band.json").read_text())["uncertain"]
    assert band_report["band"] == [low, high]
    assert band_report["unanswered"] <= 0.1 * band_report["answered"] + 2
    # and the bundle said what it stored, and where each came from
    said = capsys.readouterr().out
    assert f"threshold: {info['threshold']:g} (equal error rates on {trained_run}/val.txt" in said
    assert f"uncertain band, for --uncertain model: {low:g}:{high:g} (the least sure 10% " in said
    # the stored threshold equalises the errors of the model's own P(woman) on val.txt
    val = read_truth_table(trained_run / "val.txt")
    result = Predictor.load(trained_run / "best.keras", backend="keras").folder(val, 64)
    expected = equal_error_threshold(result.samples.labels, result.p_woman)
    assert info["threshold"] == pytest.approx(expected, abs=1e-4)
    # evaluation uses it unless --threshold is given, on both backends
    report_path = tmp_path / "r.json"
    for backend, extra, wanted in (
        ("keras", [], info["threshold"]),
        ("lite", [], info["threshold"]),
        ("keras", ["--threshold", "0.3"], 0.3),
    ):
        argv = [str(trained_run / "val.txt"), str(out / f"{task}.keras"), "--backend", backend,
                "--json", str(report_path), *extra]  # fmt: skip
        assert gender_mAP.main(argv) == 0
        assert json.loads(report_path.read_text())["threshold"] == pytest.approx(wanted), backend
    capsys.readouterr()


def test_bundle_threshold_val_by_person_weighs_each_person_once(trained_run, tmp_path, capsys):
    from gender.data import person_ids, read_truth_table
    from gender.metrics import equal_error_threshold, person_weights
    from gender.predictor import Predictor

    out = tmp_path / "pretrained"
    argv = ["bundle", str(trained_run), "--out", str(out), "--threshold", "val", "--by-person"]
    assert gender_train.main(argv) == 0
    task = json.loads((trained_run / "run.json").read_text())["task"]
    info = json.loads((out / f"{task}.json").read_text())
    assert "persons weighing the same" in info["threshold_source"]
    val = read_truth_table(trained_run / "val.txt")
    result = Predictor.load(trained_run / "best.keras", backend="keras").folder(val, 64)
    weights = person_weights(person_ids(result.samples.paths))
    expected = equal_error_threshold(result.samples.labels, result.p_woman, weights)
    assert info["threshold"] == pytest.approx(expected, abs=1e-4)
    capsys.readouterr()


def test_bundle_by_person_without_threshold_val_is_one_line(trained_run, tmp_path, capsys):
    argv = ["bundle", str(trained_run), "--out", str(tmp_path / "pretrained"), "--by-person"]
    assert gender_train.main(argv) == 2
    assert "--threshold val" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "pretrained").exists()


def test_bundle_threshold_must_be_val_or_a_probability(trained_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        gender_train.main(["bundle", str(trained_run), "--out", str(tmp_path), "--threshold", "2"])
    assert "Traceback" not in capsys.readouterr().err


def test_export_keeps_the_task_so_the_fast_path_never_detects_for_a_pedestrian_model(
    trained_run, tmp_path
):
    """The export JSON is all the LiteRT path reads: it carries the run's task, and a pedestrian
    model run from it classifies whole images instead of searching them for faces."""
    from gender.predictor import Predictor

    shutil.copy(trained_run / "best.keras", tmp_path / "best.keras")
    info = json.loads((trained_run / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**info, "task": "pedestrian"}))
    assert gender_train.main(["export", str(tmp_path / "best.keras")]) == 0
    assert json.loads((tmp_path / "best.export.json").read_text())["task"] == "pedestrian"
    predictor = Predictor.load(tmp_path / "best.keras", backend="lite")
    assert predictor.task == "pedestrian" and predictor.backend == "lite"
    # an export from before the JSON carried the task: the run.json beside it still says it
    meta = tmp_path / "best.export.json"
    meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items()
                                if k != "task"}))  # fmt: skip
    assert Predictor.load(tmp_path / "best.keras", backend="lite").task == "pedestrian"
    (tmp_path / "run.json").write_text(json.dumps({**info, "task": "face"}))
    assert Predictor.load(tmp_path / "best.keras", backend="lite").task == "face"


# --- the int8 export ----------------------------------------------------------------------------


def test_int8_export_loads_and_agrees_with_float32(trained_run, eval_images, tmp_path, capsys):
    """`export --calibration` writes best.int8.tflite beside the float32 one; --backend int8 runs
    it and its P(woman) stays close to float32's (a 32x32 cnn3 here; the bundled model's figures
    are in the slow test below)."""
    from gender.lite import load_lite

    for name in ("best.keras", "run.json"):
        shutil.copy(trained_run / name, tmp_path / name)
    weights = tmp_path / "best.keras"
    argv = ["export", str(weights), "--calibration", str(eval_images)]
    assert gender_train.main(argv) == 0
    assert "int8: " in capsys.readouterr().out
    meta = json.loads((tmp_path / "best.export.json").read_text())
    assert meta["int8"]["file"] == "best.int8.tflite"
    assert (tmp_path / "best.int8.tflite").stat().st_size < (
        tmp_path / "best.tflite"
    ).stat().st_size
    samples = list_folder(eval_images)
    from gender.data import decode_images

    images, _ = decode_images(samples, (32, 32))
    float32, _ = load_lite(weights)
    int8, _ = load_lite(weights, int8=True)
    difference = np.abs(float32.predict(images) - int8.predict(images))
    assert difference.mean() < 0.05, difference.ravel()
    assert gender_mAP.main([str(eval_images), str(weights), "--backend", "int8"]) == 0
    assert "accuracy(%)" in capsys.readouterr().out


def test_export_calibrates_int8_on_the_runs_training_folders(exported):
    # no --calibration and no val.txt: the training data the run.json names
    run_data = json.loads((exported / "run.json").read_text())["flags"]["data"]
    meta = json.loads((exported / "best.export.json").read_text())
    assert meta["int8"]["calibrated_on"] == [str(folder) for folder in run_data]
    assert (exported / "best.int8.tflite").read_bytes()[4:8] == b"TFL3"


def test_int8_backend_without_the_export_is_one_error_line(exported, eval_images, tmp_path, capsys):
    for name in ("best.keras", "run.json", "best.tflite", "best.export.json"):
        shutil.copy(exported / name, tmp_path / name)  # all but best.int8.tflite
    status = gender_single_predict.main([str(eval_images), str(tmp_path / "best.keras"),
                                         "--backend", "int8"])  # fmt: skip
    assert status == 2
    assert "no .int8.tflite" in error_line(capsys.readouterr().err)


@pytest.mark.slow
def test_bundled_face_model_int8_agrees_with_float32_on_real_faces(tmp_path):
    """The bundled face model quantized as `export` does it, calibrated on 200 faces_web and
    faces_utk images, then compared with float32 on 400 others: mean |dp| < 0.05 and the same
    label on at least 97%; with the int8 backend's float32 re-check, the same label on all."""
    from gender.data import Samples, decode_images
    from gender.export import export_all
    from gender.lite import load_lite
    from gender.predictor import PRETRAINED_DIR, Predictor

    folders = [SHARED_DATA / n / c for n in ("faces_web", "faces_utk") for c in ("man", "woman")]
    if (
        not all(folder.is_dir() for folder in folders)
        or not (PRETRAINED_DIR / "face.keras").is_file()
    ):
        pytest.skip("needs ../shared/data/faces_web, faces_utk and the bundled face model")
    calibration, test = tmp_path / "calibration", []
    for folder in folders:
        files = sorted(folder.iterdir())
        (calibration / folder.name).mkdir(parents=True, exist_ok=True)
        for path in files[1::2][:: len(files) // 100][:50]:
            os.symlink(path, calibration / folder.name / f"{folder.parent.name}_{path.name}")
        test += [(path, folder.name == "woman") for path in files[0::2][:: len(files) // 200][:100]]
    for name in ("face.keras", "face.json"):
        shutil.copy(PRETRAINED_DIR / name, tmp_path / name)
    paths = export_all(tmp_path / "face.keras", calibration=calibration)
    # Under half the float32 file. The layers the debugger keeps float32 are a few depthwise
    # convolutions and, for some weights, the last 1x1 convolution (409,600 weights, 1.2 MB more
    # as float32): MobileNetV2 bundles measured 2.7 and 3.9 MB against 8.9 MB, the averaged face
    # model 9.7 MB against 31 MB.
    assert paths["int8"].stat().st_size < paths["tflite"].stat().st_size / 2
    samples = Samples([str(p) for p, _ in test], np.array([w for _, w in test], int))
    size = json.loads((tmp_path / "face.json").read_text())["image_size"]  # the model's own input
    images, _ = decode_images(samples, size)
    float32 = load_lite(tmp_path / "face.keras")[0].predict(images).ravel()
    int8 = load_lite(tmp_path / "face.keras", int8=True)[0].predict(images).ravel()
    assert np.abs(float32 - int8).mean() < 0.05
    assert ((float32 >= 0.5) == (int8 >= 0.5)).mean() >= 0.97
    # the int8 backend, float32 again near the threshold: float32's answer on every image
    checked = Predictor.load(tmp_path / "face.keras", backend="int8").classify(images)
    assert ((float32 >= 0.5) == (checked >= 0.5)).all()
