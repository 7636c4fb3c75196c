"""--ray: a collection predicted and evaluated on a local Ray of 2 CPUs gives the local command's
rows; a rerun adds only the missing ones; an actor killed mid-run loses and doubles no row.

The commands run in this process on one Ray started for the module (a Ray already running in the
process is used as it is), so the cluster's start-up is paid once; the command's own start and
stop of a local Ray, and Ctrl-C, run in child processes (slow).
"""

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, USER_ENVIRONMENT, error_line, make_image_tree, write_truncated_jpeg

import gender_mAP
import gender_single_predict

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
pq = pytest.importorskip("pyarrow.parquet")
# Ray Data's own DataContext warns about its renamed settings whenever it is copied
# Each test starts or shares a local Ray (seconds of start-up): they run with the slow ones, which
# CI runs after the default suite, so the default suite keeps to its five minutes.
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def local_ray():
    """A Ray of 2 CPUs in this process, as CI's machine has."""
    import logging

    ray.init(  # "local": a new Ray even where `ray start` ran on this machine before
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """200 small man/woman images: 8 blocks over the 2 actors."""
    return make_image_tree(tmp_path_factory.mktemp("ray") / "crops", per_class=100)


def read_rows(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def local_rows(crops, tmp_path_factory):
    """The local command's CSV rows (header first), the answers --ray must give."""
    out = tmp_path_factory.mktemp("local") / "local.csv"
    assert gender_single_predict.main([str(crops), "--csv", str(out)]) == 0
    return read_rows(out)


def test_predict_on_ray_matches_local_and_a_rerun_adds_only_the_missing(
    local_ray, crops, local_rows, tmp_path, capsys
):
    out = tmp_path / "rows.csv"
    assert gender_single_predict.main([str(crops), "--ray", "--csv", str(out)]) == 0
    rows = read_rows(out)
    assert rows[0] == local_rows[0]
    assert sorted(rows[1:]) == sorted(local_rows[1:])  # same answers; order is finishing order
    # a run cut short: 40 rows and half a line (a crash in the middle of a write)
    text = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(text[:41]) + text[41][:10], encoding="utf-8")
    capsys.readouterr()
    assert gender_single_predict.main([str(crops), "--ray", "--csv", str(out)]) == 0
    said = capsys.readouterr()
    assert "160 predictions written" in said.out and "(40 were there already)" in said.out
    assert "40 images already answered, 160 to do" in said.err
    rows = read_rows(out)
    assert len(rows) == len(local_rows)
    assert sorted(rows[1:]) == sorted(local_rows[1:])


@pytest.mark.slow
def test_parquet_holds_the_csv_rows(local_ray, crops, local_rows, tmp_path):
    out = tmp_path / "rows.parquet"
    assert gender_single_predict.main([str(crops), "--ray", "--csv", str(out)]) == 0
    table = pq.read_table(out)
    assert table.column_names == local_rows[0]
    got = sorted(
        [r["path"], r["label"], f"{r['probability']:.4f}", f"{r['p_woman']:.4f}"]
        for r in table.to_pylist()
    )
    assert got == sorted(local_rows[1:])
    assert not list(tmp_path.glob(".*partial"))  # the temporary was renamed into place


def test_an_actor_killed_mid_run_loses_and_doubles_no_row(
    local_ray, crops, local_rows, tmp_path, monkeypatch
):
    flag = tmp_path / "crashed"
    monkeypatch.setenv("GENDER_TEST_RAY_CRASH_ONCE", str(flag))  # gender.ray_jobs.CRASH_HOOK
    out = tmp_path / "rows.csv"
    assert gender_single_predict.main([str(crops), "--ray", "--csv", str(out)]) == 0
    assert flag.exists()  # an actor did end its process holding a classified block
    rows = read_rows(out)
    paths = [row[0] for row in rows[1:]]
    assert len(paths) == len(set(paths)) == len(local_rows) - 1
    assert sorted(rows[1:]) == sorted(local_rows[1:])


def test_evaluate_on_ray_reports_the_local_numbers(local_ray, crops, tmp_path):
    reports = {}
    for name, flags in (("local", []), ("ray", ["--ray"])):
        out = tmp_path / f"{name}.json"
        assert gender_mAP.main([str(crops), "--json", str(out), *flags]) == 0
        reports[name] = json.loads(out.read_text())
        del reports[name]["setting"]["date"]
    assert reports["ray"] == reports["local"]


def test_an_unreadable_image_is_said_and_skipped(local_ray, tmp_path, capsys):
    folder = make_image_tree(tmp_path / "crops", per_class=4)
    write_truncated_jpeg(folder / "man" / "broken.jpg")
    out = tmp_path / "rows.csv"
    assert gender_single_predict.main([str(folder), "--ray", "--csv", str(out)]) == 1
    assert "broken.jpg: truncated JPEG" in capsys.readouterr().err
    assert len(read_rows(out)) == 1 + 8


def test_ray_flag_mistakes_are_one_line(crops, tmp_path, capsys):
    assert gender_single_predict.main([str(crops), "--ray"]) == 2
    assert "give --csv OUT" in error_line(capsys.readouterr().err)
    out = str(tmp_path / "x.csv")
    assert gender_single_predict.main([str(crops), "--ray", "--csv", out, "--detect-faces"]) == 2
    assert "--ray classifies each image whole" in error_line(capsys.readouterr().err)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    argv = [str(crops), "--ray", "--csv", str(tmp_path / "other.csv")]
    assert gender_single_predict.main(argv) == 2
    assert "not a prediction CSV of this command" in error_line(capsys.readouterr().err)


@pytest.mark.slow
def test_a_local_ray_per_command_and_ctrl_c_leaves_the_csv_whole(tmp_path):
    """No address: the command starts a local Ray and stops it; SIGINT mid-run keeps every
    whole row written so far, and the same command again finishes the rest."""
    folder = make_image_tree(tmp_path / "crops", per_class=1500, size=64)
    out = tmp_path / "rows.csv"
    argv = [sys.executable, "gender_single_predict.py", str(folder), "--ray", "--csv", str(out)]
    env = {**USER_ENVIRONMENT, "GENDER_RAY_CPUS": "2"}
    child = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if out.is_file() and len(out.read_bytes().splitlines()) > 200:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "interrupted (SIGINT)" in err and "the same command again does the rest" in err
    first = read_rows(out)
    assert all(len(row) == 4 for row in first) and 200 < len(first) < 3001
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = read_rows(out)
    paths = [row[0] for row in rows[1:]]
    assert len(paths) == len(set(paths)) == 3000
    assert rows[: len(first)] == first  # the rows kept are kept as they were


@pytest.mark.slow
def test_train_on_two_ray_workers_stops_when_one_dies_and_resumes(tmp_path):
    """--ray-workers 2 on a local Ray: one run folder; a worker killed after epoch 1 stops the
    run with one line naming the folder; resume on Ray finishes it, and its model predicts."""
    data = make_image_tree(tmp_path / "faces", per_class=32)
    out = tmp_path / "runs"
    fast = ["--model", "cnn3", "--image-size", "32", "--batch-size", "8", "--no-export"]
    argv = [sys.executable, "gender_train.py", "--data", str(data), *fast, "--epochs", "4",
            "--by-person", "--out", str(out), "--ray-workers", "2"]  # fmt: skip
    env = {**USER_ENVIRONMENT, "GENDER_RAY_CPUS": "2"}
    child = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    history = None
    while time.monotonic() < deadline and child.poll() is None:
        found = list(out.glob("cnn3-*/run.json")) if out.is_dir() else []
        with contextlib.suppress(ValueError, OSError):  # a run.json being replaced
            if found and json.loads(found[0].read_text()).get("epochs_done", 0) >= 1:
                history = found[0].with_name("history.csv")  # epoch 1 is committed
                break
        time.sleep(0.2)
    assert history is not None, child.communicate()[1] if child.poll() is not None else "slow"
    workers = subprocess.run(["pgrep", "-f", "TrainWorker"], capture_output=True, text=True)
    pids = [int(pid) for pid in workers.stdout.split()]
    assert pids, "no TrainWorker process found"
    os.kill(pids[-1], signal.SIGKILL)  # a node lost mid-run
    _, err = child.communicate(timeout=180)
    assert child.returncode == 2, err
    last = err.strip().splitlines()[-1]
    run_dir = history.parent
    assert last.startswith("error: training stopped"), last
    assert f"resume {run_dir} --ray-workers 2" in last, last
    done = json.loads((run_dir / "run.json").read_text())["epochs_done"]
    assert 1 <= done < 4
    resume = [sys.executable, "gender_train.py", "resume", str(run_dir), "--ray-workers", "2",
              "--no-export"]  # fmt: skip
    finished = subprocess.run(
        resume, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stderr
    assert f"after epoch {done}" in finished.stdout
    rows = list(csv.DictReader(history.open()))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert sorted(out.iterdir()) == [run_dir]  # one run folder, written by the chief
    table = tmp_path / "rows.csv"
    assert (
        gender_single_predict.main([str(data), "--weights", str(run_dir), "--csv", str(table)]) == 0
    )
    assert len(read_rows(table)) == 1 + 64
