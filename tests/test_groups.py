"""Per-group error rates (`gender_mAP.py --groups`): sources, hand-computed numbers, the CLI."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import error_line, train_small

import gender_mAP
import gender_train
from gender.data import read_truth_table
from gender.groups import NO_GROUP, group_names
from gender.metrics import group_report


def test_presets_read_the_file_names():
    bfw = ["x/man/asian_n000053_0001_01.jpg", "x/woman/white_n000999_0003_02.jpg", "x/man/a.jpg"]
    assert group_names(bfw, "bfw-ethnicity") == ["asian", "white", NO_GROUP]
    utk = ["5_0_2_2017.jpg.chip.jpg", "25_1_0_x.jpg", "45_0_3_x.jpg", "71_1_1_x.jpg"]
    assert group_names(utk, "utk-age") == ["0-17", "18-39", "40-59", "60+"]
    assert group_names(utk, "utk-race") == ["asian", "white", "indian", "black"]
    assert group_names(["VIPeR__000_45_1.bmp", "cctv__001_2.jpg"], "subset") == ["VIPeR", "cctv"]


def test_a_regex_whose_group_1_is_the_group():
    assert group_names(["a/cam1-0001.png", "b/cam2-0002.png", "c/x.png"], r"^(cam\d)-") == [
        "cam1",
        "cam2",
        NO_GROUP,
    ]


def test_a_csv_by_path_or_by_file_name(tmp_path):
    (tmp_path / "imgs").mkdir()
    a, b, c = (tmp_path / "imgs" / name for name in ("a.png", "b.png", "c.png"))
    table = tmp_path / "groups.csv"
    table.write_text("path,group\nimgs/a.png,studio\nb.png,street\n")
    assert group_names([str(a), str(b), str(c)], str(table)) == ["studio", "street", NO_GROUP]


@pytest.mark.parametrize(
    "source, words",
    [("^([a-z", "valid regex"), ("^cam", "needs a group"), ("missing.csv", "no such file")],
)
def test_bad_sources_are_one_line_errors(source, words):
    from gender import UserError

    with pytest.raises(UserError, match=words):
        group_names(["a.png"], source)


def test_group_report_hand_computed():
    # group A: 2 men (1 wrong), 2 women (right); group B: 1 man (right), 3 women (2 wrong);
    # one image in no group, wrong, which must not be named worst.
    labels = [0, 0, 1, 1, 0, 1, 1, 1, 0]
    p_woman = [0.9, 0.1, 0.8, 0.7, 0.2, 0.3, 0.4, 0.6, 0.99]
    groups = ["A", "A", "A", "A", "B", "B", "B", "B", NO_GROUP]
    report = group_report(labels, p_woman, groups)
    a, b = report["groups"]["A"], report["groups"]["B"]
    assert (a["n"], a["correct"], b["n"], b["correct"]) == (4, 3, 4, 2)
    assert a["error_rate"] == {"man": 0.5, "woman": 0.0}
    assert b["error_rate"]["man"] == 0.0 and b["error_rate"]["woman"] == pytest.approx(2 / 3)
    assert a["balanced_accuracy"] == pytest.approx(0.75)
    assert report["groups"][NO_GROUP]["error_rate"]["man"] == 1.0
    assert report["worst"] == {"group": "B", "class": "woman", "error_rate": pytest.approx(2 / 3)}


def test_a_group_with_one_class_only_has_no_error_rate_for_the_other():
    report = group_report([1, 1, 0], [0.9, 0.2, 0.1], ["w", "w", "m"])
    assert np.isnan(report["groups"]["w"]["error_rate"]["man"])
    assert report["worst"] == {"group": "w", "class": "woman", "error_rate": 0.5}


def run_map(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = gender_mAP.main(argv)
    return status, stdout.getvalue(), stderr.getvalue()


def test_cli_groups_by_regex_agree_with_the_per_image_predictions(trained_run, data_copy, tmp_path):
    # Persons 000-001 and 010-011 are "group lo", 002-003 and 012-013 "hi"; one extra image
    # matches no group. The per-group counts must add up to the whole report, and each group's
    # numbers must be those of the images' own predictions (from --errors).
    shutil.copy(data_copy / "man" / "000_0_a.png", data_copy / "man" / "extra.png")
    pattern = r"^\d\d([0-3])_"
    status, out, err = run_map(
        [
            str(data_copy),
            str(trained_run),
            "--groups",
            pattern,
            "--json",
            str(tmp_path / "r.json"),
            "--errors",
            str(tmp_path / "errors.csv"),
        ]  # fmt: skip
    )
    assert status == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    groups = report["by_group"]["groups"]
    assert set(groups) == {"0", "1", "2", "3", NO_GROUP}
    assert {name: g["n"] for name, g in groups.items()} == {
        "0": 8, "1": 8, "2": 8, "3": 8, NO_GROUP: 1
    }  # fmt: skip
    assert sum(g["correct"] for g in groups.values()) == report["correct"]
    wrong = (tmp_path / "errors.csv").read_text().splitlines()[1:]
    for name, group in groups.items():
        if name == NO_GROUP:
            continue
        errors = sum(1 for row in wrong if row.split(",")[0].rsplit("/", 1)[1][2] == name)
        assert group["n"] - group["correct"] == errors, name
    assert "worst group: " in out
    assert "1 image(s) in no group" in err and "Traceback" not in err


def test_cli_groups_from_a_csv(trained_run, image_tree, tmp_path):
    table = tmp_path / "g.csv"
    rows = [f"{p},{'first' if p.name < '005' else 'second'}" for p in image_tree.rglob("*.png")]
    table.write_text("\n".join(rows) + "\n")
    status, out, err = run_map([str(image_tree), str(trained_run), "--groups", str(table),
                                "--json", str(tmp_path / "r.json")])  # fmt: skip
    assert status == 0, err
    groups = json.loads((tmp_path / "r.json").read_text())["by_group"]["groups"]
    assert {name: g["support"] for name, g in groups.items()} == {
        "first": {"man": 16, "woman": 0},
        "second": {"man": 0, "woman": 16},
    }


def test_cli_bad_group_regex_is_one_line(trained_run, image_tree, capsys):
    assert gender_mAP.main([str(image_tree), str(trained_run), "--groups", "^(ab"]) == 2
    assert "--groups" in error_line(capsys.readouterr().err)


# --- gender_train.py --balance-groups -----------------------------------------------------------


def test_balance_weights_equalise_the_classes_within_each_group():
    from gender.groups import balance_weights

    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    groups = ["a", "a", "a", "a", "b", "b", "c", "c"]  # a: 3 men, 1 woman; c: women only
    weights = balance_weights(labels, groups)
    assert weights.mean() == pytest.approx(1.0)
    # group a: each man 4 / 6, the woman 4 / 2 (times one overall scale)
    assert weights[3] / weights[0] == pytest.approx(3.0)
    assert weights[:3].sum() == pytest.approx(weights[3])
    # b is balanced already, c has one class: both stay as they were, relative to each other
    assert weights[4] == pytest.approx(weights[5]) == pytest.approx(weights[6])
    # each group keeps its total weight: the set's make-up across groups is unchanged
    assert weights[:4].sum() / weights[4:6].sum() == pytest.approx(2.0)


@pytest.mark.parametrize("views", [False, True])
def test_weighted_batches_keep_each_weight_with_its_image(views):
    from gender.data import make_dataset

    n = 37
    index = np.arange(n, dtype=np.float32).reshape(n, 1)
    inputs = np.stack([index] * 3) if views else index  # (V, N, 1): every view holds its index
    labels = np.arange(n) % 2
    weights = (index[:, 0] + 1) / 10
    dataset = make_dataset(inputs, labels, 8, shuffle=True, seed=3, views=views,
                           sample_weights=weights)  # fmt: skip
    seen = []
    for x, y, w in dataset:
        x, y, w = x.numpy()[:, 0], y.numpy()[:, 0], w.numpy()
        np.testing.assert_allclose(w, (x + 1) / 10, rtol=1e-6)
        np.testing.assert_array_equal(y, x.astype(int) % 2)
        seen += x.astype(int).tolist()
    assert sorted(seen) == list(range(n))


def test_train_balance_groups_prints_the_weights_and_keeps_the_flag(image_tree, tmp_path, capsys):
    # image_tree's names are PERSON_INDEX_a.png: the person's first digit makes two groups
    run = train_small(image_tree, tmp_path / "runs", "--epochs", "1", "--augment", "none",
                      "--balance-groups", r"^(\d)")  # fmt: skip
    text = capsys.readouterr().out
    assert "loss weights balancing man and woman within each group" in text
    assert "class weights: in the per-image weights" in text
    assert json.loads((run / "run.json").read_text())["flags"]["balance_groups"] == r"^(\d)"


def test_train_bad_balance_groups_is_one_line_and_writes_nothing(image_tree, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["--data", str(image_tree), "--model", "cnn3", "--epochs", "1",
            "--balance-groups", "no(group", "--out", str(out)]  # fmt: skip
    assert gender_train.main(argv) == 2
    assert "no(group" in error_line(capsys.readouterr().err)
    assert not out.exists() or not list(out.iterdir())


def test_cli_by_person_agrees_with_the_per_image_predictions(trained_run, image_tree, tmp_path):
    status, out, err = run_map([str(image_tree), str(trained_run), "--by-person",
                                "--json", str(tmp_path / "r.json"),
                                "--errors", str(tmp_path / "errors.csv")])  # fmt: skip
    assert status == 0, err
    by_person = json.loads((tmp_path / "r.json").read_text())["by_person"]
    # image_tree: PERSON_INDEX_a.png, 4 images a person; recompute from the wrong images
    rows = (tmp_path / "errors.csv").read_text().splitlines()[1:]
    wrong = {Path(row.split(",")[0]).name for row in rows}
    for name in ("man", "woman"):
        images = sorted((image_tree / name).glob("*.png"))
        persons = sorted({p.name.split("_")[0] for p in images})
        assert by_person["persons"][name] == len(persons)
        shares = []
        for person in persons:
            mine = [p for p in images if p.name.startswith(person + "_")]
            shares.append(sum(p.name in wrong for p in mine) / len(mine))
        assert by_person["error_rate"][name] == pytest.approx(np.mean(shares))
    assert "per person (" in out and "persons wrong on most of their images" in out


@pytest.mark.parametrize("regex", ["^(ab", "^ab_"])  # not a regex; no group for the id
def test_person_regex_flags_refuse_a_bad_regex_in_one_line(trained_run, image_tree, capsys, regex):
    import dataset

    runs = [
        lambda: gender_mAP.main([str(image_tree), str(trained_run), "--by-person", regex]),
        lambda: gender_train.main(["--data", str(image_tree), "--weigh-persons", regex]),
        lambda: gender_train.main(["--data", str(image_tree), "--by-person", regex]),
        lambda: dataset.main(["split", str(image_tree), "--out", "never", "--by-person", regex]),
        lambda: gender_train.main(
            [
                "bundle",
                str(trained_run),
                "--out",
                "never",
                "--threshold",
                "val",
                "--by-person",
                regex,
            ]
        ),  # fmt: skip
    ]
    for run in runs:
        with pytest.raises(SystemExit) as info:
            run()
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "argument --" in err and regex in err and "Traceback" not in err
    assert not Path("never").exists()


def test_balance_weights_on_top_of_person_weights():
    from gender.groups import balance_weights
    from gender.metrics import person_weights

    labels = np.array([0, 0, 0, 0, 1, 1])
    base = person_weights(["a", "a", "a", "b", "c", "d"])  # a is in 3 frames
    # one group: 2 men and 2 women by person, so the classes are balanced already
    weights = balance_weights(labels, ["all"] * 6, base)
    np.testing.assert_allclose(weights, [0.5, 0.5, 0.5, 1.5, 1.5, 1.5], rtol=1e-6)
    # a third woman: women now outweigh men 3 to 2, and each class gets half of the total
    labels, base = np.r_[labels, 1], person_weights(["a", "a", "a", "b", "c", "d", "e"])
    weights = balance_weights(labels, ["all"] * 7, base)
    assert weights[labels == 0].sum() == pytest.approx(weights[labels == 1].sum())
    assert weights[0] * 3 == pytest.approx(weights[3])  # a's frames add up to one b


def test_train_weigh_persons_counts_each_person_once(image_tree, tmp_path, capsys):
    run = train_small(image_tree, tmp_path / "runs", "--epochs", "1", "--augment", "none",
                      "--by-person", "--weigh-persons")  # fmt: skip
    text = capsys.readouterr().out
    info = json.loads((run / "run.json").read_text())
    persons = {p.name.split("_")[0] for p in image_tree.rglob("*.png")}
    val_persons = {Path(p).name.split("_")[0] for p in read_truth_table(run / "val.txt").paths}
    train_persons = len(persons - val_persons)
    assert f"every person weighs the same (^(\\d+)_): {train_persons} persons" in text
    assert info["flags"]["weigh_persons"] == r"^(\d+)_"
