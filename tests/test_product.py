"""What a user meets first: a quiet start, --version, hints naming their command, the offline
ImageNet error, the end-of-training export and --keep, and an installed wheel that predicts."""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, USER_ENVIRONMENT, error_line, train_small

import gender_mAP
import gender_single_predict
import gender_train
from gender.console import command

SCRIPTS = ("gender_train.py", "gender_single_predict.py", "gender_mAP.py", "dataset.py")
WHEEL_LIMIT = 25 * 10**6  # bytes


def run_script(argv, env=None, cwd=REPO, timeout=120) -> subprocess.CompletedProcess:
    """A toolkit command in a fresh Python, in the user's environment (plus `env`)."""
    return subprocess.run(
        [sys.executable, *map(str, argv)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**USER_ENVIRONMENT, **(env or {})},
    )  # fmt: skip


def test_keras_prediction_prints_no_tensorflow_line(image_tree):
    """The Keras backend imports TensorFlow: none of its start-up lines reach stderr."""
    image = sorted((image_tree / "woman").iterdir())[0]
    argv = [REPO / "gender_single_predict.py", image, "--no-detect", "--backend", "keras"]
    done = run_script(argv)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert re.search(r": (man|woman) \(P\(woman\) ", done.stdout)


def test_importing_the_library_leaves_the_environment_alone():
    """`import gender` and the library's modules change no environment variable and install no
    import hook; importing the commands' package (every command's way in) sets the quiet start."""
    from gender.console import QUIET_ENVIRONMENT

    code = (
        "import os, sys\n"
        "before, finders = dict(os.environ), list(sys.meta_path)\n"
        "import gender, gender.console, gender.data, gender.flags, gender.models\n"
        "import gender.predictor\n"
        "changed = sorted(set(os.environ.items()) ^ set(before.items()))\n"
        "assert not changed, changed\n"
        "assert sys.meta_path == finders, sys.meta_path\n"
        "import gender.cli\n"
        "assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '2', os.environ\n"
        "assert len(sys.meta_path) == len(finders) + 1, sys.meta_path\n"
    )
    env = {k: v for k, v in USER_ENVIRONMENT.items() if k not in QUIET_ENVIRONMENT}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "how",
    [["--verbose"], pytest.param([], marks=pytest.mark.slow)],  # the same path, ~8 s each
    ids=["--verbose", "user TF_CPP_MIN_LOG_LEVEL=0"],
)
def test_tensorflow_lines_come_back_when_asked(image_tree, how):
    image = sorted((image_tree / "woman").iterdir())[0]
    argv = [REPO / "gender_single_predict.py", image, "--no-detect", "--backend", "keras", *how]
    done = run_script(argv, env=None if how else {"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert done.returncode == 0, done.stderr
    assert "oneDNN" in done.stderr or "absl" in done.stderr or "cuda" in done.stderr.lower()


def test_usage_error_before_tensorflow_loads():
    code = (
        "import sys\nfrom gender.cli.train import main\nstatus = main([])\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "sys.exit(status)\n"
    )
    done = run_script(["-c", code])
    assert done.returncode == 2
    assert error_line(done.stderr) == "error: --data is required (or demo, or resume RUN_DIR)"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_command_has_version(script, capsys):
    from gender import __version__

    module = {"gender_train.py": gender_train, "gender_single_predict.py": gender_single_predict,
              "gender_mAP.py": gender_mAP}.get(script)  # fmt: skip
    if module is None:
        import dataset as module
    with pytest.raises(SystemExit) as done:
        module.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip().endswith(f" {__version__}")


def test_train_modes_have_version_too(capsys):
    for mode in ("resume", "export", "bundle", "demo"):
        with pytest.raises(SystemExit):
            gender_train.main([mode, "--version"])
        assert re.fullmatch(r"\S+ \d+\.\d+\.\d+\n", capsys.readouterr().out)


@pytest.mark.parametrize(
    "argv0, expected",
    [
        ("/usr/local/bin/gender-train", "gender-map"),
        ("gender_train.py", "python gender_mAP.py"),
        ("/site-packages/gender/cli/train.py", "python -m gender.cli.evaluate"),
    ],
)
def test_hints_name_the_command_the_user_ran(monkeypatch, argv0, expected):
    monkeypatch.setattr(sys, "argv", [argv0])
    assert command("map") == expected


def test_training_hints_follow_the_installed_command(image_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/gender-train"])
    train_small(image_tree, tmp_path, "--epochs", "1", "--no-export")
    out = capsys.readouterr().out
    assert "  evaluate:   gender-map " in out and "  predict:    gender-predict " in out
    assert "python gender_" not in out


def test_offline_imagenet_download_is_one_line(image_tree, tmp_path):
    """With no network (a proxy nobody listens on) the download fails: one line, naming the
    local-file alternative."""
    argv = [REPO / "gender_train.py", "--data", image_tree, "--model", "mobilenetv2",
            "--epochs", "1", "--out", tmp_path / "runs"]  # fmt: skip
    unreachable = "http://127.0.0.1:9"
    proxies = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
    env = {"KERAS_HOME": str(tmp_path / "keras"), **dict.fromkeys(proxies, unreachable)}
    done = run_script(argv, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    line = error_line("\n".join(x for x in done.stderr.splitlines() if "Downloading" not in x))
    assert "could not download the ImageNet weights" in line and "--backbone-weights" in line


def test_training_exports_and_keeps_a_few_epochs(image_tree, tmp_path, capsys):
    """By default a run ends with its LiteRT export (so it predicts on the fast path) and keeps
    the newest 3 epoch checkpoints besides best and last."""
    run = train_small(image_tree, tmp_path, "--epochs", "5", "--patience", "9")
    names = {p.name for p in run.iterdir()}
    assert {"best.tflite", "best.int8.tflite", "best.export.json"} <= names
    assert {n for n in names if n.startswith("epoch_")} == {
        "epoch_003.keras", "epoch_004.keras", "epoch_005.keras"
    }  # fmt: skip
    assert {"best.keras", "last.keras"} <= names
    capsys.readouterr()
    image = sorted((image_tree / "man").iterdir())[0]
    assert gender_single_predict.main([str(image), "--weights", str(run), "--no-detect"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"; {run / 'best.keras'}, int8)")


def test_no_export_flag(image_tree, tmp_path):
    run = train_small(image_tree, tmp_path, "--epochs", "1", "--no-export")
    assert not list(run.glob("*.tflite"))


def test_evaluation_header_names_model_threshold_backend(trained_run, image_tree, capsys):
    assert gender_mAP.main([str(image_tree), str(trained_run), "--threshold", "0.4"]) == 0
    out = capsys.readouterr().out
    assert f"Model: {trained_run / 'best.keras'}, threshold 0.400 (--threshold), backend keras" in (
        out
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, installed (without its dependencies, which this
    Python has) into a folder of its own: what `pip install gender-classifier` puts in place."""
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(root / "dist"), str(REPO)],
        capture_output=True, text=True, timeout=600, cwd=root,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (root / "dist").glob("*.whl")
    target = root / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    return wheel, target


@pytest.mark.slow
def test_wheel_holds_only_the_package_and_stays_small(installed):
    wheel, _ = installed
    assert wheel.stat().st_size < WHEEL_LIMIT
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"gender"}


@pytest.mark.slow
def test_installed_command_predicts_from_an_empty_folder(installed, tmp_path):
    """No weights argument, another folder: the bundled model and the LiteRT detector answer."""
    import matplotlib

    _, target = installed
    photo = Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    env = {**USER_ENVIRONMENT, "PYTHONPATH": str(target)}
    env.pop("PYTHONSTARTUP", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(
        [str(target / "bin" / "gender-predict"), str(photo)],
        cwd=empty, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.rstrip().endswith("; bundled face model, int8)"), done.stdout
    assert (
        str(target)
        in subprocess.run(
            [sys.executable, "-c", "import gender; print(gender.__file__)"],
            cwd=empty,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
    )  # the installed copy answered, not the checkout
    assert not os.listdir(empty)  # nothing written where the user stands


@pytest.mark.slow
def test_installed_evaluation_writes_its_page(installed, image_tree, tmp_path):
    """The page's markup is package data (gender/report_page.html): the installed copy finds it."""
    _, target = installed
    assert (target / "gender" / "report_page.html").is_file()
    env = {**USER_ENVIRONMENT, "PYTHONPATH": str(target)}
    env.pop("PYTHONSTARTUP", None)
    page = tmp_path / "page.html"
    done = subprocess.run(
        [str(target / "bin" / "gender-map"), str(image_tree), "--report", str(page),
         "--no-task-check"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<h2>Glossary</h2>" in text
    assert "$" not in text.split('id="report-data"')[0]  # every template field filled in
