"""The evaluation page (gender_mAP.py --report), its numbers, and answering `uncertain`."""

import contextlib
import io
import json
import math
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import PER_CLASS

import gender_mAP
import gender_single_predict
from gender.metrics import (
    UNCERTAIN_ANSWER,
    answers,
    bootstrap_intervals,
    coverage_table,
    uncertain_report,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class PageParser(HTMLParser):
    """The page's figures (data-key -> data-value), picture sources, links and embedded JSON."""

    def __init__(self):
        super().__init__()
        self.values, self.sources, self.links, self.data = {}, [], [], None
        self._in_data = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-key" in attrs:
            self.values[attrs["data-key"]] = attrs["data-value"]
        if tag in ("img", "script", "iframe") and "src" in attrs:
            self.sources.append(attrs["src"])
        if tag == "link" or (tag == "a" and "href" in attrs):
            self.links.append(attrs.get("href", ""))
        self._in_data = tag == "script" and attrs.get("id") == "report-data"

    def handle_data(self, data):
        if self._in_data:
            self.data = (self.data or "") + data

    def handle_endtag(self, tag):
        self._in_data = False


def lookup(report, key):
    for part in key.split("."):
        report = report[int(part)] if isinstance(report, list) else report[part]
    return report


def same(a, b) -> bool:
    """Equal, with NaN equal to NaN (a class with no image has no error rate)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


@pytest.fixture(scope="module")
def page(trained_run, image_tree, tmp_path_factory):
    """One evaluation of the tiny run with --report, --json, --uncertain, groups and persons."""
    folder = tmp_path_factory.mktemp("page")
    argv = [str(image_tree), str(trained_run / "best.keras"),
            "--report", str(folder / "report.html"), "--json", str(folder / "report.json"),
            "--uncertain", "0.45:0.55", "--by-person", "--groups", r"^(\d)\d\d_",
            "--explain-errors", "2", "--threshold", "0.5"]  # fmt: skip
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert gender_mAP.main(argv) == 0
    parser = PageParser()
    text = (folder / "report.html").read_text()
    parser.feed(text)
    report = json.loads((folder / "report.json").read_text())
    return {"folder": folder, "parser": parser, "report": report, "text": text,
            "stdout": stdout.getvalue()}  # fmt: skip


def test_page_figures_equal_the_json(page):
    parser, report = page["parser"], page["report"]
    assert same(json.loads(parser.data), report)  # the embedded block is --json's dict
    keys = parser.values
    # the headline, its intervals, the confusion, the coverage and the uncertain part are shown
    for key in ("accuracy", "balanced_accuracy", "map", "ap.man", "error_rate.woman",
                "intervals.accuracy.0", "intervals.accuracy.1", "confusion_matrix.1.0",
                "confusion_rates.woman==>man", "coverage.2.accuracy", "threshold",
                "uncertain.unanswered", "uncertain.accuracy_answered",
                "by_person.error_rate.man", "by_group.groups.0.error_rate.man"):  # fmt: skip
        assert key in keys, key
    for key, shown in keys.items():
        value = lookup(report, key)
        if shown == "nan":
            assert value is None or math.isnan(value), key
        else:
            assert float(shown) == pytest.approx(value, abs=1e-12), key


def test_page_is_self_contained(page):
    parser = page["parser"]
    assert parser.sources, "no picture on the page"
    assert all(src.startswith("data:image/") for src in parser.sources), parser.sources[:3]
    assert not parser.links
    assert "http://" not in page["text"] and "https://" not in page["text"]
    assert "Grad-CAM" in page["text"]  # --explain-errors 2: the tiny model makes mistakes


def test_training_writes_the_page_into_the_run_folder(trained_run):
    text = (trained_run / "report.html").read_text()
    assert f"<h1>{trained_run.name}/val.txt</h1>" in text and 'id="report-data"' in text
    data = PageParser()
    data.feed(text)
    report = json.loads(data.data)
    assert report["intervals"]["unit"] == "persons"  # the run was trained with --by-person
    assert report["n"] == len((trained_run / "val.txt").read_text().splitlines()) - 1


def test_text_and_json_carry_the_intervals(page):
    report, out = page["report"], page["stdout"]
    low, high = report["intervals"]["accuracy"]
    assert low <= report["accuracy"] <= high
    assert report["intervals"]["unit"] == "persons"  # --by-person resamples persons
    assert "95% confidence intervals (bootstrap over persons)" in out
    assert "answering only the surest share" in out
    assert report["setting"]["threshold_source"] == "--threshold"
    assert report["uncertain"]["answered"] + report["uncertain"]["unanswered"] == 2 * PER_CLASS


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (apt-get install chromium)")
def test_page_renders_in_chromium(page, tmp_path):
    import cv2

    shot = tmp_path / "page.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
               f"--screenshot={shot}", "--window-size=1280,3000",
               (page["folder"] / "report.html").as_uri()]  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    image = cv2.imread(str(shot))
    assert image is not None, "chromium wrote no screenshot"
    assert image.shape[:2] == (3000, 1280)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    assert grey.std() > 20  # not a blank page: text, tables and plots
    assert (grey < 128).mean() > 0.01  # some dark ink, wherever it lies
    # the top of the page holds the title and the setting table, not an error page
    assert grey[:400].std() > 10


def test_hostile_names_stay_text(tmp_path):
    # file and group names reach the page: none may open an element or end an attribute
    from gender.evaluation import figures
    from gender.metrics import group_report
    from gender.report import build_page

    hostile = '<script>alert(1)</script>" onerror="x'
    labels = np.array([0, 1, 0, 1])
    p_woman = np.array([0.9, 0.2, 0.1, 0.8])  # two confident mistakes: both in the gallery
    paths = [str(tmp_path / f"{hostile}{i}.png") for i in range(4)]
    report = figures(labels, p_woman, 0.5)
    report.update(dataset=hostile, weights=hostile, model=hostile, backend="keras")
    report["by_group"] = group_report(labels, p_woman, [hostile] * 4, 0.5)
    report["by_group"]["source"] = hostile
    page = build_page(report, labels, p_woman, paths)

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.scripts, self.handlers = 0, []

        def handle_starttag(self, tag, attrs):
            self.scripts += tag == "script"
            self.handlers += [name for name, _ in attrs if name.startswith("on")]

    tags = Tags()
    tags.feed(page)
    assert tags.scripts == 1 and not tags.handlers  # only the JSON block
    data = PageParser()
    data.feed(page)
    assert json.loads(data.data)["dataset"] == hostile  # the JSON block keeps the name intact


@pytest.mark.slow
def test_page_of_ten_thousand_images_stays_small_and_quick(image_tree, tmp_path):
    # the galleries are capped and the thumbnails small: the page does not grow with the set
    import time

    from gender.evaluation import figures
    from gender.report import write_page

    rng = np.random.default_rng(0)
    files = sorted(str(p) for p in image_tree.rglob("*.png"))
    labels = rng.integers(0, 2, 10_000)
    p_woman = np.clip(labels * 0.6 + rng.normal(0.2, 0.25, 10_000), 0, 1)
    paths = [files[i % len(files)] for i in range(10_000)]
    started = time.perf_counter()
    report = figures(labels, p_woman, 0.5)
    report.update(dataset="synthetic", weights="w.keras", model="cnn3", backend="keras")
    size = write_page(tmp_path / "page.html", report, labels, p_woman, paths)
    seconds = time.perf_counter() - started
    assert size < 20 * 2**20
    assert seconds < 15  # a few seconds on one core; generous for a loaded CI machine


# --- the figures' definitions ------------------------------------------------------------------


def test_uncertain_answers_are_counted_and_left_out_of_accuracy():
    labels = np.array([0, 0, 0, 1, 1, 1])
    p_woman = np.array([0.1, 0.45, 0.7, 0.55, 0.9, 0.2])
    # band 0.4:0.6 -> images 1 and 3 uncertain; answered: 0 right, 2 wrong, 4 right, 5 wrong
    given = answers(p_woman, 0.5, (0.4, 0.6))
    assert given.tolist() == [0, UNCERTAIN_ANSWER, 1, UNCERTAIN_ANSWER, 1, 0]
    part = uncertain_report(labels, p_woman, 0.5, (0.4, 0.6))
    assert part["answered"] == 4 and part["unanswered"] == 2
    assert part["unanswered_share"] == pytest.approx(2 / 6)
    assert part["unanswered_by_class"] == {"man": 1, "woman": 1}
    assert part["accuracy_answered"] == pytest.approx(2 / 4)
    assert part["error_rate_answered"] == {"man": pytest.approx(1 / 2), "woman": 1 / 2}
    # no band: every image answered
    assert (answers(p_woman, 0.5) != UNCERTAIN_ANSWER).all()


def test_coverage_answers_the_surest_first():
    labels = np.array([0, 1, 0, 1, 1])
    p_woman = np.array([0.05, 0.95, 0.45, 0.6, 0.3])  # distances .45 .45 .05 .1 .2
    rows = coverage_table(labels, p_woman, 0.5, shares=(1.0, 0.6, 0.4))
    assert [row["answered"] for row in rows] == [5, 3, 2]
    assert rows[0]["accuracy"] == pytest.approx(4 / 5) and rows[0]["band"] is None
    assert rows[1]["accuracy"] == pytest.approx(2 / 3)  # .05, .95 right; .3 (woman) wrong
    assert rows[2]["accuracy"] == 1.0
    assert rows[1]["band"] == pytest.approx([0.3, 0.7])


def test_intervals_cover_a_known_rate():
    # Sets of 400 images whose answers are right with probability 0.9: the 95% interval of the
    # accuracy (and of each class's error, 0.1) should hold the true rate in ~95% of the sets.
    rng = np.random.default_rng(7)
    sets, hits, error_hits = 100, 0, 0
    for k in range(sets):
        labels = rng.integers(0, 2, 400)
        right = rng.random(400) < 0.9
        # a P(woman) on the right side of 0.5 when right, the wrong side when not
        side = np.where(right, labels, 1 - labels)
        p_woman = np.where(side == 1, rng.uniform(0.5, 1, 400), rng.uniform(0, 0.5, 400))
        ci = bootstrap_intervals(labels, p_woman, 0.5, draws=200, seed=k)
        hits += ci["accuracy"][0] <= 0.9 <= ci["accuracy"][1]
        error_hits += ci["error_rate"]["woman"][0] <= 0.1 <= ci["error_rate"]["woman"][1]
    assert 0.88 <= hits / sets <= 0.99, hits / sets
    assert 0.87 <= error_hits / sets <= 0.99, error_hits / sets


def test_intervals_over_persons_are_wider_when_frames_repeat():
    # 60 persons of 20 identical frames each: resampling frames one by one pretends there are
    # 1,200 independent answers; resampling persons knows there are 60.
    rng = np.random.default_rng(3)
    person_label = rng.integers(0, 2, 60)
    person_right = rng.random(60) < 0.85
    labels = np.repeat(person_label, 20)
    side = np.repeat(np.where(person_right, person_label, 1 - person_label), 20)
    p_woman = np.where(side == 1, 0.8, 0.2)
    persons = [str(i) for i in np.repeat(np.arange(60), 20)]
    by_image = bootstrap_intervals(labels, p_woman, 0.5, draws=400)
    by_person = bootstrap_intervals(labels, p_woman, 0.5, persons=persons, draws=400)
    width = lambda ci: ci["accuracy"][1] - ci["accuracy"][0]  # noqa: E731
    assert width(by_person) > 3 * width(by_image)
    assert by_person["unit"] == "persons"


def test_bootstrap_ap_is_the_ap_of_the_resampled_set():
    # one draw as counts gives the AP computed on the resampled images (copies tie)
    from gender.metrics import average_precision, draw_counts

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    p_woman = np.round(rng.random(50), 1)  # many ties
    ci = bootstrap_intervals(labels, p_woman, 0.5, draws=1)
    index = np.repeat(np.arange(50), draw_counts(np.random.default_rng(0), 50, 1)[0])
    for name, scores, label in (("woman", p_woman, 1), ("man", 1 - p_woman, 0)):
        expected = average_precision(labels[index] == label, scores[index])
        assert ci["ap"][name][0] == pytest.approx(expected), name
    right = ((p_woman[index] >= 0.5) == labels[index]).mean()
    assert ci["accuracy"][0] == pytest.approx(right)


def test_predict_says_uncertain_inside_the_band(trained_run, image_tree, capsys, tmp_path):
    image = next((image_tree / "man").iterdir())
    weights = str(trained_run / "best.keras")
    argv = [str(image), weights, "--no-detect", "--uncertain", "0.001:0.999"]
    assert gender_single_predict.main(argv) == 0
    assert ": uncertain (P(woman) 0." in capsys.readouterr().out
    table = tmp_path / "answers.csv"
    argv = [
        str(image_tree / "man"),
        "--weights",
        weights,
        "--uncertain",
        "0:1",
        "--csv",
        str(table),
    ]
    assert gender_single_predict.main(argv) == 0
    rows = table.read_text().splitlines()[1:]
    assert rows and all(row.split(",")[1] == "uncertain" for row in rows)


def test_explain_errors_needs_the_page(trained_run, image_tree, capsys):
    assert gender_mAP.main([str(image_tree), str(trained_run), "--explain-errors", "2"]) == 2
    assert "--report" in capsys.readouterr().err


def test_a_band_without_the_threshold_is_refused(trained_run, image_tree, capsys):
    argv = [str(image_tree), str(trained_run), "--threshold", "0.5", "--uncertain", "0.6:0.9"]
    assert gender_mAP.main(argv) == 2
    assert "does not hold the threshold" in capsys.readouterr().err


# --- pictures that explain themselves -----------------------------------------------------------


@pytest.mark.parametrize("width", [48, 96])
def test_a_small_crop_is_enlarged_so_the_caption_fits(width):
    from gender.explain import LEGEND_MIN_WIDTH, add_legend

    crop = np.full((128, width, 3), 90, np.uint8)
    caption = "Grad-CAM (keras model) of woman 0.97"
    picture = add_legend(crop, caption, "woman")
    assert picture.shape[1] >= LEGEND_MIN_WIDTH and picture.shape[1] % width == 0
    factor = picture.shape[1] // width
    strip = picture[128 * factor :]
    # ink in the caption rows reaches past the first half: the caption was not cut to a word
    ink = np.flatnonzero((strip[: strip.shape[0] // 3] < 100).all(axis=2).any(axis=0))
    assert ink.max() > picture.shape[1] // 2


def test_faces_are_numbered_left_to_right():
    from gender.faces import Face
    from gender.output import face_lines
    from gender.predictor import FaceResult, PhotoResult

    def face(x):
        return Face(box=(x, 10.0, x + 50.0, 60.0), score=1.0, landmarks=np.zeros((5, 2)))

    photo = PhotoResult("group.jpg", None, [FaceResult(face(200.0), 0.9),
                                            FaceResult(face(20.0), 0.1)])  # fmt: skip
    lines = face_lines(photo)
    assert "face 1 at x1,y1,x2,y2 = 20," in lines[0] and ": man " in lines[0]
    assert "face 2 at x1,y1,x2,y2 = 200," in lines[1] and ": woman " in lines[1]


def test_curves_mark_the_best_epoch_and_the_phase_switch(tmp_path):
    import cv2

    from gender.recorder import plot_curves

    history = [{"epoch": e, "loss": 1 / e, "val_loss": 1 / e + 0.02 * e,
                "accuracy": 1 - 1 / (e + 1), "val_accuracy": 0.9 - 0.2 / e}
               for e in range(1, 7)]  # fmt: skip
    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    plot_curves(history, plain)
    plot_curves(history, marked, best_epoch=4, switches=[2])
    # the dashed green best-epoch line is drawn (green appears only with it)
    image = cv2.imread(str(marked))
    green = (image[..., 1] > 100) & (image[..., 0] < 60) & (image[..., 2] < 60)
    base = cv2.imread(str(plain))
    base_green = (base[..., 1] > 100) & (base[..., 0] < 60) & (base[..., 2] < 60)
    assert green.sum() > 200 and base_green.sum() == 0


def test_page_leads_with_a_summary_and_names_the_folder(page, image_tree):
    """The folder's name is the title (its full path in the setting table), a summary with the
    headline figures and a sentence comes first, and the threshold always has 3 decimals."""
    import re

    text, report = page["text"], page["report"]
    assert f"<h1>{image_tree.name}</h1>" in text
    assert f"<code>{image_tree}</code>" in text  # the full path, in the table
    summary = text.index('class="summary"')
    assert summary < text.index("What was evaluated") < text.index("Confusion matrix")
    top = text[summary : text.index("What was evaluated")]
    for key in ("accuracy", "balanced_accuracy", "map", "error_rate.man", "error_rate.woman"):
        assert f'data-key="{key}"' in top, key
    assert f"Of {report['n']} images, {report['correct']} were answered right" in top
    words = re.sub(r"<[^>]+>", "", text[: text.index('<script type="application/json"')])
    shown = re.findall(r"threshold[^<\d]{0,40}(\d\.\d+)", words)
    assert shown and all(len(number) == 5 for number in shown), shown  # 0.500, never 0.5000
