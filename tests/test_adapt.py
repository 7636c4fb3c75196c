"""gender_train.py adapt: a run folder from a few labelled images, its rules, its refusals."""

import json
import shutil

import numpy as np
import pytest
from conftest import error_line, make_image_tree, run_dirs

import gender_mAP
import gender_single_predict
import gender_train
from gender.adapt import L2SP, AdaptConfig, adapt, fold_index, shrunk_threshold


@pytest.fixture(scope="module")
def adapted(trained_run, tmp_path_factory):
    """The tiny face run adapted through the CLI, one epoch, with a replay folder."""
    root = tmp_path_factory.mktemp("adapt")
    new = make_image_tree(root / "new", per_class=12, seed=5)
    old = make_image_tree(root / "old", per_class=16, seed=6)
    out = root / "runs"
    argv = ["adapt", "--data", str(new), "--weights", str(trained_run), "--out", str(out),
            "--epochs", "1", "--folds", "2", "--replay", str(old), "--replay-images", "10",
            "--by-person"]  # fmt: skip
    assert gender_train.main(argv) == 0
    (run,) = run_dirs(out)
    return run, new


def test_adapt_writes_a_run_folder_that_predicts(adapted, trained_run, capsys):
    run, new = adapted
    for name in ("best.keras", "last.keras", "history.csv", "run.json"):
        assert (run / name).is_file(), name
    info = json.loads((run / "run.json").read_text())
    assert info["adapted_from"]["weights"] == str(trained_run / "best.keras")
    assert info["adapted_from"]["task"] == info["task"] == "face"
    assert 0 < info["threshold"] < 1
    image = next((new / "woman").iterdir())
    assert gender_single_predict.main([str(image), str(run / "best.keras"), "--no-detect"]) == 0
    assert gender_mAP.main([str(new), str(run)]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_replay_mixes_at_most_as_many_old_images_as_asked_half_of_each_class(adapted):
    run, _ = adapted
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["train"] == {"man": 12, "woman": 12}
    # --replay-images 10 (fewer than the 24 new ones): 5 of each class
    assert info["data"]["replay"] == {"man": 5, "woman": 5}


def test_threshold_is_shrunk_toward_the_source_by_how_few_images_there_are():
    assert shrunk_threshold(0.3, 0.5, per_class=25, prior_images=25) == pytest.approx(0.4)
    assert shrunk_threshold(0.3, 0.5, per_class=0, prior_images=25) == pytest.approx(0.5)
    many = shrunk_threshold(0.3, 0.5, per_class=10**6, prior_images=25)
    assert many == pytest.approx(0.3, abs=1e-4)
    assert shrunk_threshold(0.3, 0.5, per_class=10, prior_images=0) == pytest.approx(0.3)


def test_folds_keep_people_whole_and_spread_each_class():
    labels = np.array([0] * 12 + [1] * 12)
    groups = [f"p{i // 3}" for i in range(24)]  # 4 people per class, 3 images each
    fold = fold_index(labels, groups, 2, seed=0)
    for person in set(groups):
        assert len({fold[i] for i, g in enumerate(groups) if g == person}) == 1
    for label in (0, 1):
        assert set(fold[labels == label]) == {0, 1}


def test_no_folds_keeps_the_source_threshold_and_auto_replays_its_training_data(
    trained_run, image_tree, tmp_path
):
    config = AdaptConfig(
        data=str(image_tree), weights=str(trained_run), out=str(tmp_path), epochs=1, folds=0
    )
    info = json.loads((adapt(config) / "run.json").read_text())
    assert info["threshold"] == info["adapted_from"]["threshold"] == 0.5
    # replay "auto": the source run's own training folders, since they are here
    assert info["replay_folders"] == [str(image_tree)]
    assert info["data"]["replay"] == {"man": 16, "woman": 16}


def test_auto_replay_without_the_source_data_adapts_without(trained_run, data_copy, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(trained_run, source)
    info = json.loads((source / "run.json").read_text())
    info["flags"]["data"] = [str(tmp_path / "gone")]
    (source / "run.json").write_text(json.dumps(info))
    config = AdaptConfig(
        data=str(data_copy), weights=str(source), out=str(tmp_path / "runs"), epochs=1, folds=0
    )
    assert "replay" not in json.loads((adapt(config) / "run.json").read_text())["data"]


def test_l2sp_is_the_squared_distance_to_the_start_weights():
    start = np.array([1.0, 2.0], np.float32)
    value = L2SP(start, 0.5)(np.array([2.0, 0.0], np.float32))
    assert float(value) == pytest.approx(0.5 * (1.0 + 4.0))


def bad_input(tmp_path, capsys, argv) -> str:
    assert gender_train.main(["adapt", *argv, "--out", str(tmp_path / "runs")]) == 2
    line = error_line(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists() or not run_dirs(tmp_path / "runs")
    return line


def test_empty_class_is_one_line(trained_run, image_tree, tmp_path, capsys):
    data = shutil.copytree(image_tree, tmp_path / "data")
    shutil.rmtree(data / "woman")
    (data / "woman").mkdir()
    line = bad_input(tmp_path, capsys, ["--data", str(data), "--weights", str(trained_run)])
    assert "no images" in line


def test_three_images_are_one_line(trained_run, tmp_path, capsys):
    data = make_image_tree(tmp_path / "few", per_class=4)
    for path in sorted((data / "man").iterdir())[:2] + sorted((data / "woman").iterdir())[:3]:
        path.unlink()
    line = bad_input(tmp_path, capsys, ["--data", str(data), "--weights", str(trained_run)])
    assert "3 images" in line and "at least" in line


def test_weights_of_the_other_task_are_one_line(trained_run, image_tree, tmp_path, capsys):
    argv = ["--data", str(image_tree), "--weights", str(trained_run), "--task", "pedestrian"]
    line = bad_input(tmp_path, capsys, argv)
    assert "a face model, not a pedestrian one" in line


def test_a_model_present_only_as_its_litert_export_is_one_line(image_tree, tmp_path, capsys):
    # what an installed copy holds of the bundled pedestrian model: the int8 file and its json
    from gender.predictor import PRETRAINED_DIR

    lite_only = tmp_path / "installed"
    lite_only.mkdir()
    for name in ("pedestrian.int8.tflite", "pedestrian.json", "pedestrian.export.json"):
        shutil.copy(PRETRAINED_DIR / name, lite_only / name)
    argv = ["--data", str(image_tree), "--weights", str(lite_only / "pedestrian.keras")]
    line = bad_input(tmp_path, capsys, argv)
    assert "int8 LiteRT file only" in line
    assert "pass --weights with weights/pretrained/pedestrian.keras from a clone" in line


@pytest.mark.slow  # an option off by default
def test_averaging_the_fold_models_makes_best_the_mean_and_keeps_last(
    trained_run, image_tree, tmp_path
):
    config = AdaptConfig(data=str(image_tree), weights=str(trained_run), out=str(tmp_path),
                         epochs=1, folds=2, average_folds=True, replay=None)  # fmt: skip
    run = adapt(config)
    info = json.loads((run / "run.json").read_text())
    assert info["averaged_models"] == 3  # the final fit and two fold models
    assert (run / "best.keras").read_bytes() == (run / "averaged.keras").read_bytes()
    from gender.predictor import load_trained

    best, _ = load_trained(run / "best.keras")
    last, _ = load_trained(run / "last.keras")
    moved = [not np.allclose(a, b) for a, b in zip(best.get_weights(), last.get_weights())]
    assert any(moved)
    assert gender_single_predict.main([str(next((image_tree / "man").iterdir())), str(run),
                                       "--no-detect"]) == 0  # fmt: skip


def test_folds_are_no_more_than_a_class_has_people(trained_run, tmp_path):
    # two people of each class, many images each (a few people filmed in many frames)
    data = make_image_tree(tmp_path / "two", per_class=8)
    for folder in (data / "man", data / "woman"):
        for i, path in enumerate(sorted(folder.iterdir())):
            path.rename(folder / f"{folder.name}{i % 2}_{i}.png")
    config = AdaptConfig(data=str(data), weights=str(trained_run), out=str(tmp_path / "runs"),
                         epochs=1, folds=3, replay=None, by_person="^([a-z]+[0-9])_")  # fmt: skip
    info = json.loads((adapt(config) / "run.json").read_text())
    assert "2-fold" in info["threshold_source"]


def test_a_missing_data_folder_is_one_line(trained_run, tmp_path, capsys):
    line = bad_input(tmp_path, capsys, ["--data", str(tmp_path / "gone"), "--weights",
                                        str(trained_run)])  # fmt: skip
    assert line.endswith("gone: no such file or folder")


# --unlabelled: self-training on crops of the new setting without labels


def unlabelled_folder(root, image_tree):
    """Real face photos from ../shared (synthetic ones without it) in nested folders, no
    labels, and one file that is no image at all."""
    from conftest import SHARED_DATA

    source = SHARED_DATA / "faces_web"
    source = source if source.is_dir() else image_tree
    for name in ("man", "woman"):
        folder = root / "camera" / f"day-{name}"  # a layout of the camera's own, not classes
        folder.mkdir(parents=True)
        for path in sorted((source / name).iterdir())[:8]:
            shutil.copy(path, folder / path.name)
    (root / "camera" / "broken.jpg").write_bytes(b"not an image at all")
    return root / "camera"


@pytest.mark.slow  # three self-training fits, ~10 s: the slow set (CI runs it)
def test_adapt_with_unlabelled_crops_self_trains_and_records_them(trained_run, tmp_path, capsys):
    new = make_image_tree(tmp_path / "new", per_class=12, seed=5)
    crops = unlabelled_folder(tmp_path / "u", new)
    argv = ["adapt", "--data", str(new), "--weights", str(trained_run), "--out",
            str(tmp_path / "runs"), "--epochs", "1", "--folds", "2", "--replay", "none",
            "--unlabelled", str(crops), "--no-export"]  # fmt: skip
    assert gender_train.main(argv) == 0
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err  # reported and skipped, as everywhere
    assert "16 unlabelled" in captured.out
    assert "self-training round 3/3" in captured.out
    (run,) = run_dirs(tmp_path / "runs")
    info = json.loads((run / "run.json").read_text())
    assert info["adapt"]["unlabelled"] == str(crops)
    assert info["data"]["unlabelled"] == 16
    # the last round labels up to half of them, in the labelled images' shares (12 and 12):
    # at most 4 of each class (fewer where the model calls fewer crops that class)
    pseudo = info["data"]["pseudo_labelled"]
    assert set(pseudo) == {"man", "woman"} and 0 < sum(pseudo.values()) <= 8
    assert max(pseudo.values()) <= 4
    assert gender_mAP.main([str(new), str(run)]) == 0


def test_pseudo_labels_take_the_most_confident_in_the_class_shares():
    from gender.adapt import pseudo_labels

    p = np.array([0.05, 0.45, 0.55, 0.99, 0.9, 0.3, 0.01])
    index, labels = pseudo_labels(p, 0.5, 4, np.array([0.5, 0.5]))
    assert index.tolist() == [0, 3, 4, 6] and labels.tolist() == [0, 1, 1, 0]
    # a class with fewer calls gives what it has
    index, labels = pseudo_labels(p, 0.95, 4, np.array([0.25, 0.75]))
    assert labels.tolist().count(1) == 1 and labels.tolist().count(0) == 1


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda root: root, "no such file or folder"),
        (lambda root: (root.mkdir(), root)[1], "no image files in this folder"),
        (
            lambda root: (root.mkdir(), (root / "a.jpg").write_bytes(b"x"), root)[2],
            "none of its 1 images could be read",
        ),  # fmt: skip
    ],
)
def test_bad_unlabelled_input_is_one_line(trained_run, image_tree, tmp_path, capsys, make, words):
    crops = make(tmp_path / "crops")
    argv = ["adapt", "--data", str(image_tree), "--weights", str(trained_run), "--unlabelled",
            str(crops), "--out", str(tmp_path / "runs")]  # fmt: skip
    assert gender_train.main(argv) == 2
    err = capsys.readouterr().err
    # the error, after a warning for each unreadable file (reported as everywhere)
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: {crops}") and words in line, line
    assert not (tmp_path / "runs").exists() or not run_dirs(tmp_path / "runs")


def test_face_adaptation_starts_from_the_one_bundled_network_by_default(image_tree):
    from gender.adapt import AdaptConfig, source_model

    path, model, info, task = source_model(AdaptConfig(data=str(image_tree)))
    # the bundled face model averages two networks; adapt fine-tunes one: face-fast
    assert path.name == "face-fast.keras" and task == "face" and info.averaged_with is None
