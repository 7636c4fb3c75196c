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


def _hopper():
    import matplotlib

    return Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")


def test_pedestrian_model_given_a_portrait_warns(capsys):
    """The bundled pedestrian model still answers for a portrait, but says it may not suit."""
    import gender_single_predict

    assert gender_single_predict.main([str(_hopper()), "--task", "pedestrian"]) == 0
    out, err = capsys.readouterr()
    assert "bundled pedestrian model" in out
    (line,) = err.strip().splitlines()
    assert line.startswith("warning: the input may not suit a pedestrian model: the image is ")
    assert "not tall like a pedestrian crop" in line and "(--task face)" in line
    assert line.endswith("(--no-task-check hides this)")
    argv = [str(_hopper()), "--task", "pedestrian", "--no-task-check"]
    assert gender_single_predict.main(argv) == 0
    assert capsys.readouterr().err == ""


def test_a_face_filling_a_tall_crop_is_not_a_pedestrian(tmp_path):
    """Cut tall like a pedestrian crop, a portrait is told apart by the face filling it."""
    import cv2

    from gender.images import read_image
    from gender.task_fit import mismatch

    rgb = read_image(_hopper())
    tall = rgb[60:520, 167:367]  # 200 wide, 460 high: the pedestrian model's shape; the face
    path = tmp_path / "tall_portrait.png"
    cv2.imwrite(str(path), cv2.cvtColor(tall, cv2.COLOR_RGB2BGR))
    why = mismatch("pedestrian", (224, 96), [str(path)])
    assert why and why.startswith("a face fills the image"), why
    assert mismatch("face", (128, 128), [str(path)]) is not None  # tall: not a face crop


def test_face_model_given_tall_crops_warns(tmp_path, capsys):
    """Evaluating full-body-shaped crops with the face model: one warning, the report goes on."""
    from conftest import make_image_tree

    import gender_mAP
    from gender.task_fit import mismatch

    square = make_image_tree(tmp_path / "square", per_class=4, size=64)
    assert mismatch("face", (128, 128), [str(p) for p in square.rglob("*.png")]) is None
    tall = tmp_path / "tall"
    for path in square.rglob("*.png"):
        import cv2

        target = tall / path.relative_to(square)
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.resize(cv2.imread(str(path)), (48, 128)))
    assert mismatch("pedestrian", (224, 96), [str(p) for p in tall.rglob("*.png")]) is None
    assert gender_mAP.main([str(tall)]) == 0
    out, err = capsys.readouterr()
    assert "mAP(%)" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "8 of 8 images looked at are (e.g. 48x128)" in warnings[0]
    assert "--task pedestrian" in warnings[0]


@pytest.mark.parametrize(
    "flags, step",
    [
        (["--backend", "lite"], "leave --backend out, or give --backend int8"),
        (["--explain", "heat.png"], "pass --weights with weights/pretrained/pedestrian.keras"),
    ],
    ids=["--backend lite", "--explain"],
)
def test_installed_pedestrian_model_hints_are_steps(tmp_path, capsys, flags, step):
    """What an installed copy holds of the pedestrian model is its int8 file: each refusal says
    what the user can do instead (not 'export' a .keras file the copy does not have)."""
    import shutil

    from conftest import error_line

    import gender_single_predict
    from gender.predictor import PRETRAINED_DIR

    lite_only = tmp_path / "installed"
    lite_only.mkdir()
    for name in ("pedestrian.int8.tflite", "pedestrian.json", "pedestrian.export.json"):
        shutil.copy(PRETRAINED_DIR / name, lite_only / name)
    argv = [str(_hopper()), "--weights", str(lite_only / "pedestrian.keras"), "--no-task-check"]
    assert gender_single_predict.main([*argv, *flags]) == 2
    line = error_line(capsys.readouterr().err)
    assert step in line and "export" not in line, line


def _parsers():
    """(name, parser) of every command and every mode of one."""
    import argparse

    from gender.cli import dataset, evaluate, predict, train

    found = []

    def walk(parser, name):
        found.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for mode, sub in action.choices.items():
                    walk(sub, f"{name} {mode}")

    for module in (train, evaluate, predict, dataset):
        walk(module.build_parser(), module.__name__.split(".")[-1])
    return found


def test_every_flag_says_what_it_does():
    """--help describes every flag, in the user's words (no project-internal names), and shows
    a regex as it is typed (one backslash)."""
    import argparse

    for name, parser in _parsers():
        for action in parser._actions:
            if action.option_strings and action.help is not argparse.SUPPRESS:
                assert action.help, f"{name} {action.option_strings[0]}: no help"
        text = parser.format_help()
        for word in ("seed's", "seeds'", "issue ", "original notes", "(README, "):
            assert word not in text, f"{name} --help says {word!r}"
        assert "\\\\" not in text, f"{name} --help doubles a backslash"


@pytest.mark.parametrize(
    "main, argv, expected",
    [
        ("gender_train", ["--data", "d", "--epcohs", "5"], "(did you mean --epochs?)"),
        ("gender_train", ["adapt", "--data", "d", "--sed", "3"], "(did you mean --seed?)"),
        ("gender_mAP", ["d", "--threshhold", "0.3"], "(did you mean --threshold?)"),
        ("gender_single_predict", ["x.jpg", "--no-detction"], "(did you mean --no-detect?)"),
    ],
)
def test_a_mistyped_flag_is_one_line_with_a_guess(main, argv, expected, capsys):
    import importlib

    with pytest.raises(SystemExit) as stop:
        importlib.import_module(main).main(argv)
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: unrecognized arguments: ") and expected in line, line
    assert line.endswith(" --help"), line


def test_confusion_rates_are_read_as_shares_of_each_true_class():
    """Three men (one answered woman), one woman: man==>woman is 1/3, a share of the men; the
    note under the rates says so (the answer given the true class, not the other way)."""
    from gender.evaluation import figures
    from gender.output import format_report

    report = figures([0, 0, 0, 1], [0.9, 0.1, 0.2, 0.8], 0.5)
    text = format_report(report, "hand case")
    assert "man==>woman      0.333" in text and "man==>man        0.667" in text
    assert "woman==>woman    1.000" in text
    assert "of the images of each true class, the share given each answer" in text
