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
from conftest import REPO, USER_ENVIRONMENT, error_line, make_image_tree, run_dirs

import dataset as dataset_cli
import gender_mAP
import gender_single_predict
import gender_train
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


# 2. stored metadata: every field checked where it is read, one line naming file and field


@pytest.mark.parametrize(
    "field, value",
    [
        ("threshold", float("nan")),
        ("threshold", 2.0),
        ("threshold", -1),
        ("threshold", float("inf")),  # what 1e400 reads as
        ("threshold", True),
        ("threshold", "abc"),
        ("class_names", 5),
        ("uncertain_band", [0.4]),
        ("uncertain_band", [0.2, 1.5]),
        ("model", "cnn99"),
        ("image_size", [32, "x"]),
        ("task", "cats"),
        ("epochs_done", -3),
        ("flags", {"epochs": "many"}),
        ("flags", {"val_split": 1.5}),
        ("flags", {"data": 7}),
    ],
)
def test_stored_metadata_is_checked(trained_run, image_tree, tmp_path, field, value, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").symlink_to(trained_run / "best.keras")
    info = json.loads((trained_run / "run.json").read_text())
    if field == "flags":
        info["flags"].update(value)
        field = f"{field}.{next(iter(value))}"
    else:
        info[field] = value
    (run / "run.json").write_text(json.dumps(info))  # NaN and Infinity as Python writes them
    image = next((image_tree / "man").iterdir())
    assert gender_single_predict.main([str(image), str(run / "best.keras")]) == 2
    line = error_line(capsys.readouterr().err)
    assert str(run / "run.json") in line and repr(field) in line, line


@pytest.mark.parametrize("adapt", [{"data": "x", "epochs": "3"}, {"data": "x", "l2sp": -1}, [1]])
def test_an_adapt_runs_stored_settings_are_checked(trained_run, tmp_path, adapt, capsys):
    import shutil

    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "adapt": adapt, "threshold": 0.5}))
    assert gender_train.main(["resume", str(run)]) == 2
    line = error_line(capsys.readouterr().err)
    assert str(run / "run.json") in line and "'adapt" in line, line


def test_bundled_and_sidecar_json_pass_the_check():
    from gender.config import check_info, read_info_file

    for path in sorted((REPO / "gender" / "pretrained").glob("*.json")):
        read_info_file(path)
    with pytest.raises(UserError, match="expected a JSON object"):
        check_info([1, 2], "x.json")


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda m: m.update(class_names=5), "class_names"),
        (lambda m: m.update(splits=[]), "splits"),
        (lambda m: m["splits"]["train"]["shards"][0].update(file="../../outside"), "shards"),
        (lambda m: m["splits"]["train"]["shards"][0].update(count="x"), "shards"),
        (lambda m: m["splits"]["train"].update(counts={"man": -1}), "counts"),
    ],
)
def test_a_packed_folder_manifest_is_checked(image_tree, tmp_path, change, field, capsys):
    import shutil

    packed = tmp_path / "packed"
    assert dataset_cli.main(["pack", str(image_tree), "--out", str(packed)]) == 0
    manifest = json.loads((packed / "manifest.json").read_text())
    change(manifest)
    (packed / "manifest.json").write_text(json.dumps(manifest))
    argv = ["--data", str(packed), "--model", "cnn3", "--image-size", "32", "--epochs", "1",
            "--out", str(tmp_path / "runs")]  # fmt: skip
    assert gender_train.main(argv) == 2
    line = error_line(capsys.readouterr().err)
    assert "manifest.json: field" in line and field in line, line
    shutil.rmtree(packed)


# 3. the pixel limit holds for every format OpenCV decodes, told from the bytes, not the name


FORMATS = [".png", ".jpg", ".bmp", ".webp", ".tif", ".gif", ".jp2", ".hdr", ".ras", ".ppm", ".pfm"]


@pytest.mark.parametrize("ext", FORMATS)
def test_pixel_limit_holds_for_every_format_under_any_name(ext, tmp_path, monkeypatch):
    import cv2

    from gender.images import BadImageError, read_image

    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), np.uint8)
    if ext in (".hdr", ".pfm"):
        image = image.astype(np.float32) / 255
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    for name in (f"real{ext}", "named.png", "named.jpg"):  # the name never decides
        path = tmp_path / name
        path.write_bytes(buffer.tobytes())
        monkeypatch.setenv("GENDER_MAX_IMAGE_PIXELS", "2399")
        with pytest.raises(BadImageError, match="60x40 pixels, over the limit"):
            read_image(path)
        monkeypatch.setenv("GENDER_MAX_IMAGE_PIXELS", "2400")
        assert read_image(path).shape == (40, 60, 3)


def test_a_tiff_claiming_a_huge_page_is_refused_before_decoding(tmp_path):
    """A small TIFF whose first page is 12000x12000 (144 MP) is refused from its header."""
    import struct

    from gender.images import BadImageError, read_image

    entries = [(256, 4, 1, 12000), (257, 4, 1, 12000), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, 12000),
               (279, 4, 1, 144_000_000)]  # fmt: skip
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries)
    data = b"II*\0" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + bytes(2000)
    for name in ("big.tif", "big.png"):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(BadImageError, match="12000x12000 pixels"):
            read_image(tmp_path / name)


def test_unknown_formats_never_reach_a_decoder(tmp_path):
    from gender.images import BadImageError, read_image

    (tmp_path / "x.png").write_bytes(b"\0\0\0\x1cftypheic" + bytes(100))  # HEIC: not read here
    with pytest.raises(BadImageError, match="not an image format read here"):
        read_image(tmp_path / "x.png")
    (tmp_path / "y.jpg").write_bytes(b"P6\n")  # a PNM header without its size
    with pytest.raises(BadImageError, match="damaged PNM header"):
        read_image(tmp_path / "y.jpg")


# 4 and 5. names are text, never plot markup; the page's data and --json are strict JSON


def page_data(page: Path) -> dict:
    """The report page's embedded JSON, read as a browser would: the element ends at the first
    '</script' and is parsed by a strict JSON reader (no NaN)."""
    text = page.read_text(encoding="utf-8")
    start = text.index('id="report-data">') + len('id="report-data">')
    block = text[start : text.index("</script", start)]
    assert "<!--" not in block and "<script" not in block.lower()
    return json.loads(block, parse_constant=lambda name: pytest.fail(f"{name} in the page"))


def test_markup_in_names_and_strict_json(image_tree, trained_run, tmp_path, capsys):
    import shutil

    hostile = "sale_$5_off_$10 <!-- </script> $\\alpha$"
    data = Path(shutil.copytree(image_tree, tmp_path / hostile))
    # a group name with markup, holding men only: its woman error rate is undefined (null)
    table = tmp_path / "groups.csv"
    rows = [f"{p},{'$x^2$ <!--' if p.parent.name == 'man' else 'w'}" for p in data.rglob("*.png")]
    table.write_text("path,group\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    argv = [str(data), str(trained_run), "--groups", str(table), "--json", str(out / "r.json"),
            "--plots", str(out / "plots"), "--report", str(out / "page.html")]  # fmt: skip
    assert gender_mAP.main(argv) == 0, capsys.readouterr().err
    assert "Traceback" not in capsys.readouterr().err
    strict = json.loads(
        (out / "r.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in --json")
    )
    group = strict["by_group"]["groups"]["$x^2$ <!--"]
    assert group["error_rate"]["woman"] is None  # undefined: null, not NaN
    assert page_data(out / "page.html") == strict
    assert {p.name for p in (out / "plots").iterdir()} >= {"confusion_matrix.png", "groups.png"}


def test_json_text_and_script_json_are_strict_and_inert():
    from gender.tables import json_text, script_json

    value = {"a": float("nan"), "b": [np.float32("inf"), -np.inf, 1.5], "c": "</script><!--&"}
    assert json.loads(json_text(value)) == {"a": None, "b": [None, None, 1.5], "c": value["c"]}
    embedded = script_json(value)
    assert "<" not in embedded and ">" not in embedded
    assert json.loads(embedded)["c"] == value["c"]


# 6. outputs that collide: one path for two outputs is refused; sets never mix


@pytest.mark.parametrize(
    "flags",
    [
        ["--json", "{o}", "--errors", "{o}", "--report", "{o}"],
        ["--json", "{o}", "--report", "{l}"],  # a link to the same file
        ["--plots", "{d}", "--json", "{d}/r.json"],  # a file inside the folder of another
    ],
)
def test_one_path_for_two_outputs_is_refused(image_tree, trained_run, tmp_path, flags, capsys):
    (tmp_path / "l").symlink_to(tmp_path / "o")
    given = [f.format(o=tmp_path / "o", l=tmp_path / "l", d=tmp_path / "d") for f in flags]
    assert gender_mAP.main([str(image_tree), str(trained_run), *given]) == 2
    assert "this command" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()
    image = str(next((image_tree / "man").iterdir()))
    argv = [image, str(trained_run), "--annotate", str(tmp_path / "o.png"),
            "--explain", str(tmp_path / "o.png")]  # fmt: skip
    assert gender_single_predict.main(argv) == 2
    assert "two outputs" in error_line(capsys.readouterr().err)


def test_concurrent_sets_of_outputs_never_mix(tmp_path):
    """Two processes commit the same two outputs; the first pauses between its two renames. The
    second waits for it (a lock on the folders), so both files end up the second's."""
    import subprocess
    import sys
    import time

    code = (
        "import sys\nfrom gender.atomic import file_set\n"
        "with file_set() as files:\n"
        "    for name in ('a.json', 'b.html'):\n"
        "        files.add(sys.argv[1] + '/' + name).write_text(sys.argv[2])\n"
    )
    env = {**USER_ENVIRONMENT, "GENDER_TEST_PAUSE_IN_SAVE": "1.5:a.json"}
    first = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path), "first"], cwd=REPO, env=env
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "a.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # the first set is half committed now, and pausing
    second = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), "second"], cwd=REPO, env=USER_ENVIRONMENT
    )
    assert first.wait(30) == 0 and second.returncode == 0
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.html").read_text() == "second"


# 7. the truth table's round trip: what dataset.py writes, its reader reads back, path for path

ODD_NAMES = ["line\nbreak", "carriage\rreturn", "next\x85line", "sep\u2028line", "tab\tin",
             "#hash", '"quoted"', "\ufeffbom", " spaced ", "plain é"]  # fmt: skip


def test_truth_table_round_trips_every_name(image_tree, tmp_path, capsys):
    import shutil

    from gender.data import read_truth_table

    data = tmp_path / "faces"
    for name in ("man", "woman"):
        (data / name).mkdir(parents=True)
    sources = sorted((image_tree / "man").iterdir()) + sorted((image_tree / "woman").iterdir())
    for i, odd in enumerate(ODD_NAMES):
        label = "man" if i % 2 else "woman"
        shutil.copy(sources[i], data / label / f"{odd}.png")
    # a class folder reached through a link: the .txt lists the link as the .npy does
    linked = tmp_path / "elsewhere"
    shutil.copytree(image_tree / "woman", linked)
    (data / "woman" / "more").symlink_to(linked)
    assert dataset_cli.main(["truth", str(data)]) == 0
    back = read_truth_table(data / "ground_truth.txt")
    table = np.load(data / "ground_truth.npy")
    assert [os.path.abspath(p) for p in back.paths] == [os.path.abspath(p) for p in table["path"]]
    assert {Path(p).name for p in back.paths} >= {f"{odd}.png" for odd in ODD_NAMES}
    assert not any(str(linked) in p for p in back.paths)
    np.testing.assert_array_equal(back.labels, table["label"])
    # and the evaluator reads the table without losing a row
    text = (data / "ground_truth.txt").read_text(encoding="utf-8")
    assert len(back) == len(table) == len(text.split("\n")) - 2  # the header, the last newline


@pytest.mark.parametrize(
    "rows, words",
    [
        (["man/a.png\t0", "man/a.png\t0"], "listed again (line 1"),
        (["man/a.png\t0", "woman/b.png\t1", "man/./a.png\t1"], "listed with both labels"),
    ],
)
def test_truth_table_refuses_a_path_listed_twice(tmp_path, rows, words, capsys):
    table = tmp_path / "t.txt"
    table.write_text("\n".join(rows) + "\n")
    assert gender_mAP.main([str(table)]) == 2
    line = error_line(capsys.readouterr().err)
    assert f"{table}:" in line and words in line, line


def test_truth_table_with_a_bom_and_crlf_keeps_its_first_row(image_tree, tmp_path):
    from gender.data import read_truth_table

    first = next((image_tree / "man").iterdir())
    table = tmp_path / "t.txt"
    table.write_bytes(f"\ufeff{first}\t0\r\n".encode())
    assert read_truth_table(table).paths == [str(first)]


# 8. adapt's edges: resume continues with adapt's recipe and threshold; a dead replay class


@pytest.mark.slow  # ~10 s: an adaptation and its resume
def test_resume_of_an_interrupted_adapt_continues_its_recipe(trained_run, tmp_path, capsys):
    from gender.runs import read_history

    new = make_image_tree(tmp_path / "new", per_class=12, seed=5)
    argv = ["adapt", "--data", str(new), "--weights", str(trained_run), "--out",
            str(tmp_path / "runs"), "--epochs", "3", "--folds", "2", "--replay", "none",
            "--no-export"]  # fmt: skip
    assert gender_train.main(argv) == 0
    (run,) = run_dirs(tmp_path / "runs")
    whole = read_history(run)
    info = json.loads((run / "run.json").read_text())
    # what a kill in the final fit's third epoch leaves: two committed epochs, nothing after
    interrupted = {k: v for k, v in info.items() if k not in ("adapt_seconds", "best_epoch")}
    interrupted["epochs_done"] = 2
    # as a run written before adapt's settings took training's names ("lr", "cache_views")
    record = dict(interrupted["adapt"])
    record["learning_rate"], record["views"] = record.pop("lr"), record.pop("cache_views")
    interrupted["adapt"] = record
    (run / "run.json").write_text(json.dumps(interrupted))
    assert interrupted["threshold"] == info["threshold"]  # stored before the final fit
    capsys.readouterr()
    assert gender_train.main(["resume", str(run), "--no-export"]) == 0
    out = capsys.readouterr().out
    assert "resuming the adaptation" in out and "after epoch 2 of 3" in out
    again = read_history(run)
    assert [row["epoch"] for row in again] == [1, 2, 3]
    # the cosine rate went on where it stopped (the training recipe would restart it)
    assert again[2]["learning_rate"] == pytest.approx(whole[2]["learning_rate"], rel=1e-5)
    final = json.loads((run / "run.json").read_text())
    assert final["threshold"] == info["threshold"] and final["epochs_done"] == 3
    assert final["data"]["val"] == {} and "adapt" in final and (run / "best.keras").is_file()
    assert gender_train.main(["resume", str(run), "--epochs", "5"]) == 2
    assert "adapt run" in error_line(capsys.readouterr().err)


def test_a_replay_class_of_unreadable_files_is_refused(trained_run, tmp_path, capsys):
    new = make_image_tree(tmp_path / "new", per_class=12, seed=5)
    old = make_image_tree(tmp_path / "old", per_class=8, seed=6)
    for path in (old / "woman").iterdir():
        path.write_bytes(b"not an image at all")
    argv = ["adapt", "--data", str(new), "--weights", str(trained_run), "--out",
            str(tmp_path / "runs"), "--epochs", "1", "--replay", str(old)]  # fmt: skip
    assert gender_train.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: no woman image of the replay could be read"), last
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# 9. a run folder as the last argument: taken as the model, or refused in one line


def test_a_run_folder_last_is_the_model(image_tree, trained_run, capsys):
    images = sorted((image_tree / "man").iterdir())[:2]
    argv = [str(images[0]), str(trained_run), "--no-detect"]
    assert gender_single_predict.main(argv) == 0
    assert trained_run.name in capsys.readouterr().out  # the answer names the run's model
    argv = [*map(str, images), str(trained_run), "--no-detect"]
    assert gender_single_predict.main(argv) == 0
    captured = capsys.readouterr()
    assert trained_run.name in captured.err and captured.out.count("\n") == 3  # header + 2 rows


@pytest.mark.parametrize(
    "argv, words",
    [
        (["{image}", "{run}", "--weights", "{run}/best.keras"], "is the model already"),
        (["{run}"], "a run folder (a model), not images"),
        (["{run}", "{image}"], "give it after the images"),
    ],
)
def test_a_run_folder_among_the_images_is_one_line(image_tree, trained_run, argv, words, capsys):
    image = next((image_tree / "man").iterdir())
    argv = [a.format(image=image, run=trained_run) for a in argv]
    assert gender_single_predict.main(argv) == 2
    assert words in error_line(capsys.readouterr().err)


def test_map_takes_a_run_folder_as_model_and_refuses_it_as_data(image_tree, trained_run, capsys):
    assert gender_mAP.main([str(image_tree), str(trained_run)]) == 0
    assert trained_run.name in capsys.readouterr().out
    assert gender_mAP.main([str(trained_run), str(image_tree)]) == 2
    assert "a run folder (a model), not a data set" in error_line(capsys.readouterr().err)
    argv = [str(image_tree), str(trained_run), "--weights", str(image_tree)]
    assert gender_mAP.main(argv) == 2
    assert "two models given" in error_line(capsys.readouterr().err)


def test_a_plots_folder_holds_one_evaluations_pictures(image_tree, trained_run, tmp_path):
    plots = tmp_path / "plots"
    argv = [str(image_tree), str(trained_run), "--plots", str(plots)]
    assert gender_mAP.main([*argv, "--groups", "^(\\d)"]) == 0
    assert (plots / "groups.png").is_file()
    assert gender_mAP.main(argv) == 0  # no groups this time: the older groups.png goes
    assert sorted(p.name for p in plots.iterdir()) == ["confusion_matrix.png", "pr_curves.png"]
