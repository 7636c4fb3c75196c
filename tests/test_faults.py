"""Nothing half-done: signals, a full disk, file sets, CSV cells, nan, label conflicts, TF_CONFIG.

Signals go to child processes (a signal to pytest itself would stop the session); SIGINT is set
to its default in each child, as a shell gives it to a job in the foreground. The full-disk
tests mount a 2 MB tmpfs and are skipped when not run as root.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGE_SIZE, REPO, USER_ENVIRONMENT, error_line, make_image_tree, run_dirs

import dataset as dataset_cli
import gender_mAP
import gender_single_predict
import gender_train
from gender import UserError

TRAIN_FAST = ["--model", "cnn3", "--image-size", str(IMAGE_SIZE), "--batch-size", "8"]


def child(code: str, **kw) -> subprocess.Popen:
    """A Python child running `code` in the repository, SIGINT at its default (not ignored)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env={**USER_ENVIRONMENT, **kw.pop("env", {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kw,
    )


def wait_for(proc: subprocess.Popen, word: str, timeout: float = 120) -> None:
    """Read the child's stdout until a line containing `word`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if word in line:
            return
        assert line or proc.poll() is None, f"child ended: {proc.stderr.read()}"
    pytest.fail(f"{word!r} not printed in {timeout} s")


def stopped(proc: subprocess.Popen, signum: int, within: float) -> tuple[int, str, float, str]:
    """Send `signum`; (status, stderr, seconds it took the child to end, the rest of stdout)."""
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=within + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running {within + 30} s after {signal.Signals(signum).name}")
    return proc.returncode, err, time.monotonic() - sent, out


def last_line(err: str) -> str:
    """The last stderr line, with no traceback before it (TensorFlow's start-up lines may)."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.strip()][-1]


def committed(out: Path) -> bool:
    """Whether the one run folder under `out` has committed its first epoch (run.json)."""
    runs = list(out.glob("*/run.json")) if out.is_dir() else []
    try:
        return bool(runs) and json.loads(runs[0].read_text()).get("epochs_done", 0) >= 1
    except (OSError, json.JSONDecodeError):
        return False


def stop_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("interrupted ("), err
    return lines[-1]


# --- signals ------------------------------------------------------------------------------------

WORK = """
    import sys, time
    from gender import interrupt
    from gender.console import run_cli

    def work():
        interrupt.keep("the test kept this")
        print("working", flush=True)
        {body}

    sys.exit(run_cli(work))
"""


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_is_one_line_and_its_status(signum, status):
    proc = child(WORK.format(body="time.sleep(60)"))
    wait_for(proc, "working")
    code, err, took, _ = stopped(proc, signum, within=3)
    assert code == status and took < 3, (code, took, err)
    assert stop_line(err) == f"interrupted ({signum.name}): the test kept this"


def test_a_main_thread_stuck_in_native_code_still_stops():
    """The main thread cannot run Python's handler (here: the signals are blocked in it, as a
    thread inside TensorFlow's C++ never returns to Python); the watcher ends the process."""
    body = "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM]); time.sleep(60)"
    proc = child(WORK.format(body=body).replace("import sys, time", "import signal, sys, time"))
    wait_for(proc, "working")
    code, err, took, _ = stopped(proc, signal.SIGTERM, within=10)
    assert code == 143 and took < 10, (code, took, err)
    assert stop_line(err) == "interrupted (SIGTERM): the test kept this"


def test_a_signal_during_a_finalizer_is_not_lost():
    """Python drops an exception raised in __del__ (TensorFlow's objects have them): the
    signal is delivered again once the work is outside it."""
    body = """
        class Slow:
            def __del__(self):
                time.sleep(0.6)

        while True:
            Slow()
            time.sleep(0.2)
    """
    proc = child(WORK.format(body=textwrap.indent(textwrap.dedent(body), " " * 8).strip()))
    wait_for(proc, "working")
    time.sleep(0.1)  # inside the first __del__
    code, err, took, _ = stopped(proc, signal.SIGTERM, within=5)
    assert code == 143 and took < 5, (code, took, err)
    assert "Exception ignored" not in err
    assert stop_line(err) == "interrupted (SIGTERM): the test kept this"


def test_renames_that_belong_together_are_not_cut():
    body = """
        with interrupt.deferred():
            print("renaming", flush=True)
            time.sleep(1.5)
            print("all renamed", flush=True)
        time.sleep(60)
    """
    proc = child(WORK.format(body=textwrap.indent(textwrap.dedent(body), " " * 8).strip()))
    wait_for(proc, "renaming")
    code, err, _, out = stopped(proc, signal.SIGTERM, within=5)
    assert code == 143 and "all renamed" in out, (out, err)
    assert stop_line(err) == "interrupted (SIGTERM): the test kept this"


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_training_stops_with_its_resume_command(tmp_path, signum, status):
    data = make_image_tree(tmp_path / "faces")
    out = tmp_path / "runs"
    argv = ["--data", str(data), *TRAIN_FAST, "--epochs", "200", "--patience", "200",
            "--out", str(out)]  # fmt: skip
    proc = child(f"import sys, gender_train; sys.exit(gender_train.main({argv!r}))")
    deadline = time.monotonic() + 300
    while not committed(out):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(1)  # into a later epoch
    code, err, took, _ = stopped(proc, signum, within=6)
    assert code == status and took < 6, (code, took, err)
    (run_dir,) = run_dirs(out)
    line = stop_line(err)
    assert f"{run_dir} keeps epoch " in line, line
    assert line.endswith(f"continue with: python gender_train.py resume {run_dir}")
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporaries


# --- multi-worker -------------------------------------------------------------------------------


def test_tf_config_index_out_of_range_and_other_mistakes(image_tree, tmp_path, monkeypatch, capsys):
    argv = ["--data", str(image_tree), *TRAIN_FAST, "--epochs", "1", "--out", str(tmp_path)]
    two = ["127.0.0.1:1", "127.0.0.1:2"]
    cases = [
        ({"cluster": {"worker": two}, "task": {"type": "worker", "index": 2}}, "task.index"),
        ({"cluster": {"worker": "127.0.0.1:1,127.0.0.1:2"}}, "cluster.worker"),
        ({"cluster": {"worker": two}, "task": {"type": "worker", "index": "1"}}, "task.index"),
        ({"cluster": {"worker": two, "ps": ["127.0.0.1:3"]}, "task": {"type": "ps"}}, "cluster.ps"),
        ({"cluster": {"worker": two}, "task": {"type": "ps", "index": 0}}, "task.type"),
        ({"cluster": {"worker": two}}, "TF_CONFIG task"),
        ([1, 2], "JSON object"),
    ]
    for config, field in cases:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
        assert gender_train.main(argv) == 2, config
        assert field in error_line(capsys.readouterr().err), config
    monkeypatch.setenv("TF_CONFIG", '{"cluster": ')
    assert gender_train.main(argv) == 2
    assert "TF_CONFIG is not valid JSON" in error_line(capsys.readouterr().err)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_chief_without_its_worker_gives_up_after_the_peer_timeout(image_tree, tmp_path):
    from gender.distribute import local_cluster

    env = local_cluster(2)[0]  # worker 0 of two; worker 1 never starts
    argv = ["--data", str(image_tree), *TRAIN_FAST, "--epochs", "2", "--peer-timeout", "12",
            "--out", str(tmp_path / "runs")]  # fmt: skip
    proc = child(
        f"import sys, gender_train; sys.exit(gender_train.main({argv!r}))",
        env={"TF_CONFIG": env["TF_CONFIG"]},
    )
    out, err = proc.communicate(timeout=200)
    worker1 = json.loads(env["TF_CONFIG"])["cluster"]["worker"][1]
    assert f"worker 0: waiting for worker 1 at {worker1} (10 s of --peer-timeout 12)" in out
    line = last_line(err)
    assert proc.returncode == 2 and line.startswith("error: worker 0: "), err
    assert "gave up after 1" in line and f"worker 1 at {worker1}" in line, line
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_sigterm_stops_a_multi_worker_chief(tmp_path):
    from test_scale import start_workers

    data = make_image_tree(tmp_path / "faces", per_class=32)
    out = tmp_path / "pair"
    argv = ["--data", str(data), *TRAIN_FAST, "--epochs", "100", "--out", str(out)]
    chief, worker = start_workers(argv, tmp_path, "stop")
    deadline = time.monotonic() + 300
    log = tmp_path / "stop-0.log"
    while not committed(out):
        assert chief.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    sent = time.monotonic()
    chief.send_signal(signal.SIGTERM)
    try:
        code = chief.wait(20)
    except subprocess.TimeoutExpired:
        chief.kill()
        pytest.fail("the chief ignored SIGTERM")
    took = time.monotonic() - sent
    try:
        worker.wait(150)  # without its chief the worker stops too (TensorFlow's heartbeats)
    except subprocess.TimeoutExpired:
        worker.kill()
    text = log.read_text()
    assert code == 143 and took < 10, (code, took, text[-2000:])
    assert "Traceback" not in text
    (run_dir,) = run_dirs(out)
    assert f"interrupted (SIGTERM): {run_dir} keeps epoch " in text
    assert "error: training stopped in epoch" in (tmp_path / "stop-1.log").read_text()


# --- usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--lr", "nan"],
        ["--lr", "inf"],
        ["--lr", "-1"],
        ["--fine-tune-lr", "nan"],
        ["--val-split", "nan"],
        ["--val-split", "1.5"],
        ["--peer-timeout", "nan"],
        ["--peer-timeout", "inf"],
    ],
)
def test_nan_and_inf_flags_are_usage_errors(image_tree, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        gender_train.main(["--data", str(image_tree), *argv])
    assert stop.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_image_size_has_an_upper_bound(image_tree, tmp_path, capsys):
    argv = ["--data", str(image_tree), "--model", "cnn3", "--image-size", "100000"]
    assert gender_train.main([*argv, "--out", str(tmp_path)]) == 2
    assert "from 32 to 1024" in error_line(capsys.readouterr().err)


def test_run_folders_made_in_the_same_second_take_the_next_suffix(tmp_path):
    from gender.runs import new_run_dir

    count = 12
    barrier, made, errors = threading.Barrier(count), [], []

    def make():
        barrier.wait()
        try:
            made.append(new_run_dir(tmp_path, "cnn3"))
        except UserError as err:
            errors.append(err)

    threads = [threading.Thread(target=make) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(made)) == count


def test_a_model_of_the_other_task_is_refused(trained_run, small_image, capsys):
    status = gender_single_predict.main(
        [str(small_image), str(trained_run / "best.keras"), "--task", "pedestrian"]
    )
    assert status == 2
    assert "is a face model" in error_line(capsys.readouterr().err)


# --- nan ------------------------------------------------------------------------------------------


def test_a_nan_loss_stops_training_keeping_the_last_good_epoch(tmp_path):
    from gender.config import RunRecord
    from gender.recorder import RunRecorder

    history = [{"epoch": 1, "loss": 0.6, "val_loss": 0.6}]
    recorder = RunRecorder(tmp_path, RunRecord(epochs_done=1), "val_loss", history=history)
    with pytest.raises(UserError) as err:
        recorder.on_train_batch_end(3, {"loss": float("nan")})
    assert "loss became nan in epoch 2" in str(err.value)
    assert f"{tmp_path} keeps epoch 1, the last good one; train again with a lower --lr" in str(
        err.value
    )
    with pytest.raises(UserError, match="val_loss became inf in epoch 2"):
        recorder.on_epoch_end(1, {"loss": 0.5, "val_loss": math.inf})
    assert len(recorder.history) == 1 and not list(tmp_path.iterdir())  # nothing committed


@pytest.mark.slow
def test_a_diverging_run_stops_with_one_line(image_tree, tmp_path, capsys):
    argv = ["--data", str(image_tree), *TRAIN_FAST, "--epochs", "3", "--lr", "1e30",
            "--out", str(tmp_path)]  # fmt: skip
    assert gender_train.main(argv) == 2
    line = last_line(capsys.readouterr().err)
    assert line.startswith("error: training stopped: loss became nan in epoch 1"), line
    assert "no epoch of" in line and line.endswith("train again with a lower --lr")


@pytest.fixture
def small_image(image_tree):
    return sorted((image_tree / "woman").iterdir())[0]


def test_a_model_answering_nan_is_refused_at_load(trained_run, tmp_path, small_image, capsys):
    import keras

    model = keras.saving.load_model(trained_run / "best.keras", compile=False)
    layer = model.layers[-1]
    layer.set_weights([np.full_like(w, np.nan) for w in layer.get_weights()])
    shutil.copy(trained_run / "run.json", tmp_path / "run.json")
    model.save(tmp_path / "best.keras")
    status = gender_single_predict.main([str(small_image), str(tmp_path / "best.keras")])
    assert status == 2
    assert "answers nan or infinity" in error_line(capsys.readouterr().err)


# --- CSV cells ----------------------------------------------------------------------------------

POISON = ["=cmd|' -C calc'!A0.png", "+SUM(1+1).png", "@x.png", "-2+3.png"]


def test_csv_cells_that_a_spreadsheet_would_run_get_a_quote():
    from gender.tables import csv_text, safe_cell

    for text in [*POISON, "\tx", "\rx"]:
        assert safe_cell(text) == "'" + text
    assert safe_cell("-0.25") == "-0.25" and safe_cell(-3) == -3 and safe_cell("a=b") == "a=b"
    assert csv_text(["path"], [["=1+1"]]) == "path\r\n'=1+1\r\n"


def test_prediction_and_error_tables_neutralise_poisoned_names(
    trained_run, tmp_path, capsys, monkeypatch
):
    import csv

    from gender.data import Samples
    from gender.output import errors_csv

    folder = tmp_path / "data"
    make_image_tree(folder, per_class=4)
    for name in POISON:
        shutil.copy(sorted((folder / "woman").iterdir())[0], folder / "woman" / name)
    monkeypatch.chdir(folder / "woman")  # relative paths: the names start the cells
    weights = str(trained_run / "best.keras")
    argv = [".", weights, "--no-detect", "--csv", str(tmp_path / "p.csv")]
    assert gender_single_predict.main(argv) == 0
    capsys.readouterr()
    cells = [row[0] for row in csv.reader((tmp_path / "p.csv").open())]
    assert {"'" + name for name in POISON} <= set(cells), cells
    samples = Samples(POISON, np.array([0, 1, 0, 1]))
    rows = list(csv.reader(errors_csv(samples, np.array([0.9, 0.1, 0.9, 0.1]), 0.5).splitlines()))
    for cell in cells + [row[0] for row in rows]:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert len(rows) == 5


# --- sets of files ------------------------------------------------------------------------------


def test_a_file_set_is_all_new_or_all_old(tmp_path):
    from gender.atomic import file_set

    a, b = tmp_path / "x.txt", tmp_path / "x.npy"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(KeyboardInterrupt), file_set(lock=tmp_path) as files:
        files.add(a).write_text("new a")
        raise KeyboardInterrupt  # between the two writes
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    with file_set(lock=tmp_path) as files:
        files.add(a).write_text("new a")
        files.add(b).write_text("new b")
        files.drop(tmp_path / "x.extra")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "x.txt"]  # no temporaries


def test_a_folder_filled_by_crop_or_pack_appears_whole_or_not_at_all(tmp_path):
    from gender.atomic import whole_folder

    out = tmp_path / "crops"
    with pytest.raises(KeyboardInterrupt), whole_folder(out) as work:
        (work / "man").mkdir()
        (work / "man" / "a.png").write_bytes(b"x")
        raise KeyboardInterrupt
    assert not list(tmp_path.iterdir())  # neither the folder nor its temporary
    out.mkdir()  # an empty folder given as --out is taken
    with whole_folder(out) as work:
        (work / "a.png").write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["crops"] and (out / "a.png").is_file()


def test_concurrent_file_sets_end_with_one_complete_set(tmp_path):
    from gender.atomic import file_set

    names = [tmp_path / f"face.{suffix}" for suffix in ("keras", "json", "tflite")]

    def write(tag):
        for _ in range(30):
            with file_set(lock=tmp_path) as files:
                for path in names:
                    files.add(path).write_text(tag)

    threads = [threading.Thread(target=write, args=(tag,)) for tag in "AB"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({path.read_text() for path in names}) == 1
    assert len(list(tmp_path.iterdir())) == 3


def test_interrupted_evaluation_keeps_the_previous_outputs(
    trained_run, image_tree, tmp_path, capsys, monkeypatch
):
    import gender.cli.evaluate

    outputs = ["--json", str(tmp_path / "r.json"), "--errors", str(tmp_path / "e.csv"),
               "--plots", str(tmp_path / "plots")]  # fmt: skip
    argv = [str(image_tree), str(trained_run / "best.keras"), *outputs]
    assert gender_mAP.main(argv) == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert len(before) == 4

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(gender.cli.evaluate, "save_plots", interrupted)  # the command's name for it
    capsys.readouterr()
    assert gender_mAP.main([*argv, "--threshold", "0.3"]) == 130
    line = stop_line(capsys.readouterr().err)
    assert "earlier --json/--errors/--plots/--report stay whole" in line and "--resume" not in line
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # and no temporaries beside them


@pytest.mark.slow
def test_an_interrupted_bundle_keeps_the_previous_set(trained_run, tmp_path, capsys, monkeypatch):
    import gender.export

    out = tmp_path / "pretrained"
    assert gender_train.main(["bundle", str(trained_run), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"face.keras", "face.json", "face.tflite", "face.export.json"} <= set(before)

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(gender.export, "export_int8", interrupted)
    monkeypatch.setattr(gender.export, "export_tflite", interrupted)
    capsys.readouterr()
    status = gender_train.main(
        ["bundle", str(trained_run), "--out", str(out), "--threshold", "0.4"]
    )
    assert status == 130
    line = stop_line(capsys.readouterr().err)
    assert "keeps its previous face.* files whole" in line and "resume" not in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
def test_two_bundles_into_one_folder_end_with_one_set(trained_run, tmp_path):
    out = tmp_path / "pretrained"
    procs = [
        child(
            "import sys, gender_train\n"
            f"sys.exit(gender_train.main(['bundle', {str(trained_run)!r}, '--out', {str(out)!r},"
            f" '--threshold', {threshold!r}]))"
        )
        for threshold in ("0.3", "0.7")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    model, export = (
        json.loads((out / name).read_text()) for name in ("face.json", "face.export.json")
    )
    assert model["threshold"] == export["threshold"] in (0.3, 0.7)
    assert sorted(p.name for p in out.iterdir()) == [
        "face.export.json",
        "face.int8.tflite",
        "face.json",
        "face.keras",
        "face.tflite",
    ]


def test_the_truth_pair_is_replaced_together(image_tree, tmp_path, capsys, monkeypatch):
    stem = tmp_path / "truth"
    assert dataset_cli.main(["truth", str(image_tree), "--out", str(stem)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full(*args, **kw):
        raise OSError(28, "No space left on device", str(args[0]))

    monkeypatch.setattr(np, "save", full)
    more = tmp_path / "more"
    shutil.copytree(image_tree, more)
    shutil.copy(sorted((more / "man").iterdir())[0], more / "man" / "extra.png")
    capsys.readouterr()
    assert dataset_cli.main(["truth", str(more), "--out", str(stem)]) == 2
    assert "No space left on device" in error_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


# --- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root only): writes past it fail with ENOSPC, as on a full disk."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the patched-write tests run anyway)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)])
    if mounted.returncode:
        pytest.skip("mount -t tmpfs failed (no mount permission in this container)")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(small_disk):
    from gender.atomic import write_text

    target = small_disk / "report.txt"
    write_text(target, "old")
    with pytest.raises(UserError) as err:
        write_text(target, "x" * 3_000_000)
    assert str(err.value).startswith(f"{target}: cannot be written (No space left on device")
    assert target.read_text() == "old"
    assert [p.name for p in small_disk.iterdir()] == ["report.txt"]


def test_full_disk_commands(small_disk, image_tree, trained_run, capsys):
    stem = small_disk / "truth"
    assert dataset_cli.main(["truth", str(image_tree), "--out", str(stem)]) == 0
    before = {p.name: p.read_bytes() for p in small_disk.iterdir()}
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # leave a few kB
        try:
            f.write(b"\0" * 2_100_000)
        except OSError:
            pass
    capsys.readouterr()
    assert dataset_cli.main(["truth", str(image_tree), "--out", str(stem)]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {stem}.") and "No space left on device" in line, line
    assert {p.name: p.read_bytes() for p in small_disk.iterdir() if p != filler} == before
    # training checks the space its checkpoints need before decoding or training
    argv = ["--data", str(image_tree), *TRAIN_FAST, "--epochs", "5", "--out", str(small_disk)]
    assert gender_train.main(argv) == 2
    assert "free on its disk" in error_line(capsys.readouterr().err)
    # prediction and evaluation check the space their tables need before the work
    csv_path = small_disk / "p.csv"
    status = gender_single_predict.main(
        [str(image_tree), str(trained_run / "best.keras"), "--csv", str(csv_path)]
    )
    assert status == 2 and "free on its disk" in last_line(capsys.readouterr().err)
    argv = [str(image_tree), str(trained_run / "best.keras"), "--json", str(small_disk / "r.json")]
    assert gender_mAP.main(argv) == 2
    assert "free on its disk" in error_line(capsys.readouterr().err)
    assert not [p for p in small_disk.iterdir() if p.name.startswith(".")]


# --- label conflicts ----------------------------------------------------------------------------


def test_a_file_in_both_classes_is_refused_by_training(data_copy, tmp_path, capsys):
    shutil.copy(sorted((data_copy / "man").iterdir())[0], data_copy / "woman" / "copy.png")
    argv = ["--data", str(data_copy), *TRAIN_FAST, "--epochs", "1", "--out", str(tmp_path / "r")]
    assert gender_train.main(argv) == 2
    line = error_line(capsys.readouterr().err)
    assert "in both man/ and woman/" in line and "copy.png" in line
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").iterdir())


def test_class_folders_that_are_one_are_refused(image_tree, tmp_path, capsys):
    (tmp_path / "same").mkdir()
    (tmp_path / "same" / "man").symlink_to(image_tree / "man")
    (tmp_path / "same" / "woman").symlink_to(image_tree / "man")
    assert dataset_cli.main(["check", str(tmp_path / "same")]) == 2
    assert "are the same folder" in error_line(capsys.readouterr().err)


def test_dataset_check_lists_copies_across_classes_and_splits(image_tree, tmp_path, capsys):
    import cv2

    root = tmp_path / "set"
    for split in ("train", "val"):
        shutil.copytree(image_tree, root / split)
    man = sorted((image_tree / "man").iterdir())
    shutil.copy(man[0], root / "train" / "woman" / "copy.png")  # byte-identical, other class
    image = cv2.imread(str(man[1]))
    cv2.imwrite(str(root / "train" / "woman" / "near.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert dataset_cli.main(["check", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"conflict: {root / 'train' / 'man' / man[0].name} (train man) and " in out
    assert "copy.png (train woman) are the same file or byte-identical" in out
    assert "near.jpg (train woman) look the same" in out
    assert f"leak: {root / 'train' / 'man' / man[0].name} (train man) and " in out  # val too


def test_thin_and_lopsided_splits_are_warned(capsys):
    from gender.conflicts import check_training_labels
    from gender.data import Samples

    paths = [f"/nowhere/{i}.png" for i in range(130)]
    labels = np.array([0] * 125 + [1] * 5)
    check_training_labels({"train": Samples(paths, labels), "val": None})
    err = capsys.readouterr().err
    assert "train split: only 5 woman image(s)" in err and "125 against 5" in err
