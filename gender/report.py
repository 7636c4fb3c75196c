"""Pictures of an evaluation: the plots (PNG files) and the one-file HTML page that shows it all.

The page is self-contained: every picture is a data: URI, the styles are inline and nothing is
loaded from the network, so it opens from a file:// path, a mail attachment or an archive. Its
numbers are the evaluation's JSON (`gender.evaluation.Evaluation.report`, as `--json` writes
it): the whole dict is embedded in a <script type="application/json" id="report-data"> block,
and every figure shown carries the key it came from (`data-key`, `data-value`), so a test can
check the page says what the JSON says.

Matplotlib through its object API only (`Figure`): no pyplot, no global backend to choose.
"""

import base64
import html
import io
import textwrap
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import numpy as np

from gender import CLASS_NAMES
from gender.atomic import atomic_path, write_text
from gender.images import BadImageError, read_image, resize
from gender.metrics import UNCERTAIN_ANSWER, answers, pr_curve, roc_curve
from gender.output import advice_sentence
from gender.predictor import Predictor
from gender.tables import script_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from gender.evaluation import Evaluation


def plain_figure(**kwargs: object) -> "Figure":
    """A matplotlib Figure whose text is shown as written: a `$` in a folder, file or group name
    (`sale_$5_off_$10`) is never parsed as mathtext (a parse error that took down every plot).

    text.parse_math is read when each text is made, ticks and legends included, so it is turned
    off for the process here, where every figure of the toolkit is made. (Matplotlib's own
    wrap=True measures the text as mathtext whatever that setting says: wrap with textwrap.)
    """
    import matplotlib
    from matplotlib.figure import Figure

    matplotlib.rcParams["text.parse_math"] = False
    return Figure(**kwargs)


GALLERY_MISTAKES = 48  # thumbnails of mistakes at most: the page stays small on any set
GALLERY_UNCERTAIN = 24
THUMB_HEIGHT = 112  # pixels; JPEG quality below: ~4 KB a thumbnail
THUMB_QUALITY = 75
COLOURS = {"man": "#3b6fd8", "woman": "#d8483b"}

GLOSSARY = [
    (
        "P(woman)",
        "the model's output for an image, from 0 (surely a man) to 1 (surely a woman). At or "
        "above the threshold the answer is woman, below it man.",
    ),
    (
        "error rate of a class",
        "the share of that class's images given the other answer: 'error man' is the share of "
        "men called women (the confusion matrix's man==>woman), 'error woman' the share of women "
        "called men. Moving the threshold up lowers one and raises the other.",
    ),
    (
        "accuracy",
        "the share of all images answered right; on a set with many more of one class it mostly "
        "reflects that class.",
    ),
    (
        "balanced accuracy",
        "the mean of the two classes' accuracies (1 minus the mean of the two error rates): "
        "each class counts the same, however many images it has.",
    ),
    (
        "AP (average precision)",
        "for one class, how well P(woman) ranks its images first, over every threshold at once "
        "(1 = all of them before any image of the other class). It does not depend on the "
        "threshold.",
    ),
    ("mAP", "the mean of the two classes' AP."),
    (
        "95% confidence interval",
        "how precisely this set measures a figure: a range built to hold the figure's true "
        "value (on everything this set was drawn from) 19 times in 20. Here the middle 95% of "
        "the figure over 1,000 resamplings of the images (or of the persons, all of a person's "
        "images together).",
    ),
    (
        "equal-error threshold",
        "the threshold at which both classes' error rates are about equal on this set.",
    ),
    (
        "uncertain",
        "with --uncertain LOW:HIGH, an image whose P(woman) lies strictly between LOW and HIGH "
        "gets no answer; accuracy is then counted on the answered images only (--uncertain "
        "model: the band the model was bundled with).",
    ),
]


# --- the plots ---------------------------------------------------------------------------------


def _png(fig: "Figure", dpi: int = 96) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


# Plots are drawn at the size they are shown (96 dpi: one pixel per CSS pixel), with text near
# the page's own size: a small figure scaled up by the browser blurs, scaled down shrinks its labels
PLOT_FONT = {"font.size": 12, "axes.titlesize": 13, "legend.fontsize": 11}


def _styled(draw, *args, **kwargs) -> "Figure":
    """`draw(*args, **kwargs)`'s figure, with the page's font sizes."""
    import matplotlib

    with matplotlib.rc_context(PLOT_FONT):
        fig = draw(*args, **kwargs)
        fig.tight_layout()
    return fig


def confusion_figure(report: dict, title: str = "") -> "Figure":
    """The confusion matrix: each cell's count and its share of the true class (row)."""
    fig = plain_figure(figsize=(5.2, 4.6))
    ax = fig.subplots()
    matrix = np.asarray(report["confusion_matrix"])
    rows = matrix.sum(1, keepdims=True)
    rates = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            # white on the dark cells, black on the light ones: readable on every shade
            colour = "white" if rates[i, j] > 0.5 else "black"
            text = f"{matrix[i, j]}\n{100 * rates[i, j]:.2f}% of {CLASS_NAMES[i]}"
            ax.text(j, i, text, ha="center", va="center", color=colour)
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=CLASS_NAMES,
        yticklabels=CLASS_NAMES,
        xlabel=f"answer (threshold {report['threshold']:.3f})",
        ylabel="true class",
    )
    ax.set_title(textwrap.fill(title or "confusion matrix", 64))
    fig.tight_layout()
    return fig


def pr_roc_figure(report: dict, labels: np.ndarray, p_woman: np.ndarray) -> "Figure":
    """Precision-recall and ROC curves of both classes, the model's operating point marked."""
    fig = plain_figure(figsize=(11, 4.6))
    pr_ax, roc_ax = fig.subplots(1, 2)
    threshold = report["threshold"]
    for label, name in enumerate(CLASS_NAMES):
        is_class = labels == label
        scores = p_woman if label == 1 else 1 - p_woman
        recall, precision = pr_curve(is_class, scores)
        colour = COLOURS[name]
        pr_ax.step(recall, precision, where="post", color=colour,
                   label=f"{name} (AP {100 * report['ap'][name]:.2f}%)")  # fmt: skip
        pr_ax.plot(report["recall"][name], report["precision"][name], "o", color=colour,
                   markeredgecolor="black")  # fmt: skip
        false_positive, true_positive = roc_curve(is_class, scores)
        roc_ax.plot(false_positive, true_positive, color=colour, label=name)
        other = CLASS_NAMES[1 - label]
        roc_ax.plot(report["error_rate"][other], report["recall"][name], "o", color=colour,
                    markeredgecolor="black")  # fmt: skip
    pr_ax.plot([], [], "o", color="grey", markeredgecolor="black",
               label=f"the model's answers at {threshold:.3f}")  # fmt: skip
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall", ylim=(0, 1.02))
    pr_ax.legend(loc="lower left")
    roc_ax.set(
        xlabel="false positive rate (other class called this one)",
        ylabel="true positive rate (recall)",
        title="ROC",
    )
    roc_ax.legend(loc="lower right")
    for ax in (pr_ax, roc_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def sweep_figure(report: dict) -> "Figure":
    """Both classes' error rates against the threshold; the model's and the equal-error marked."""
    sweep, advice = report["threshold_sweep"], report["threshold_advice"]
    fig = plain_figure(figsize=(11, 4.4))
    ax = fig.subplots()
    for name in CLASS_NAMES:
        ax.plot(sweep["threshold"], 100 * np.asarray(sweep["error_rate"][name]),
                color=COLOURS[name], label=f"error {name}")  # fmt: skip
    ax.axvline(
        report["threshold"], color="black", label=f"model's threshold {report['threshold']:.3f}"
    )
    eer = advice["equal_error_threshold"]
    ax.axvline(eer, color="grey", linestyle="--", label=f"equal-error threshold {eer:.3f}")
    # near the threshold is where a choice is made: the y axis stops well above today's errors
    now = max((100 * v for v in report["error_rate"].values() if v == v), default=0)
    top = min(100, max(20, 4 * now))
    # a margin on each side: a curve running along x = 0 or 1 stays off the axis lines
    ax.set(xlabel="threshold on P(woman)", ylabel="error rate (%)", xlim=(-0.03, 1.03),
           ylim=(0, top))  # fmt: skip
    ax.set_title("error rates against the threshold")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # beside, not over
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def coverage_figure(
    rows: list[dict], labels: np.ndarray, p_woman: np.ndarray, threshold: float
) -> "Figure":
    """Accuracy against the share answered (the surest first), a continuous curve."""
    distance = np.abs(p_woman - threshold)
    order = np.argsort(-distance, kind="mergesort")
    correct = ((p_woman >= threshold).astype(int) == labels)[order]
    share = np.arange(1, len(labels) + 1) / len(labels)
    accuracy = np.cumsum(correct) / np.arange(1, len(labels) + 1)
    keep = share >= 0.3
    fig = plain_figure(figsize=(5.6, 4.2))
    ax = fig.subplots()
    ax.plot(100 * share[keep], 100 * accuracy[keep], color="black")
    for row in rows:  # at the share actually answered: a small set cannot answer 95% exactly
        answered = row["answered"] / len(labels)
        ax.plot(100 * answered, 100 * row["accuracy"], "o", color="#d8483b")
    ax.invert_xaxis()
    ax.set(xlabel="share answered, surest first (%)", ylabel="accuracy on the answered (%)")
    ax.set_title("answering only when sure")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def groups_figure(part: dict, title: str) -> "Figure":
    """Each group's two error rates side by side (bars), the worst first."""
    groups = list(part["groups"])
    height = max(2.5, 0.35 * len(groups) + 1.2)
    fig = plain_figure(figsize=(8, height))
    ax = fig.subplots()
    y = np.arange(len(groups))
    for k, name in enumerate(CLASS_NAMES):
        rates = [100 * np.nan_to_num(part["groups"][g]["error_rate"][name]) for g in groups]
        ax.barh(y + (k - 0.5) * 0.4, rates, height=0.4, color=COLOURS[name],
                label=f"error {name}")  # fmt: skip
    ax.set_yticks(y, groups)
    ax.invert_yaxis()
    ax.set(xlabel="error rate (%)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def save_plots(
    folder: Path, report: dict, labels: np.ndarray, p_woman: np.ndarray, title: str = ""
) -> None:
    """Write folder/confusion_matrix.png, folder/pr_curves.png (with ROC) and, with groups in
    the report, folder/groups.png for one evaluation."""
    pictures = [
        ("confusion_matrix.png", confusion_figure(report, title)),
        ("pr_curves.png", pr_roc_figure(report, np.asarray(labels), np.asarray(p_woman))),
    ]
    if report.get("by_group"):
        pictures.append(("groups.png", groups_figure(report["by_group"], f"error rates, {title}")))
    for name, fig in pictures:
        with atomic_path(folder / name) as tmp:
            fig.savefig(tmp, dpi=100)


# --- the page ----------------------------------------------------------------------------------


def thumbnail(path: str, height: int = THUMB_HEIGHT) -> str:
    """A small JPEG of the image as a data: URI ("" when it cannot be read)."""

    try:
        rgb = read_image(path)
    except (BadImageError, OSError):
        return ""
    return _jpeg_uri(rgb, height)


def _jpeg_uri(rgb: np.ndarray, height: int) -> str:
    import cv2

    scale = height / rgb.shape[0]
    width = max(1, min(round(rgb.shape[1] * scale), 2 * height))
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY]
    )
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode() if ok else ""


def _image(fig: "Figure", alt: str) -> str:
    data = base64.b64encode(_png(fig)).decode()
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _value(key: str, value, text: str | None = None) -> str:
    """A figure of the page with the JSON key it comes from (for readers and for the tests)."""
    key = html.escape(key)  # group names come from file names and CSVs: any character
    if value is None or (isinstance(value, float) and value != value):
        return f'<span data-key="{key}" data-value="nan">n/a</span>'
    shown = text if text is not None else f"{100 * value:.2f}%"
    return f'<span data-key="{key}" data-value="{value!r}">{html.escape(shown)}</span>'


def _interval(key: str, bounds: Sequence[float]) -> str:
    low, high = bounds
    return f"[{_value(key + '.0', low)}, {_value(key + '.1', high)}]"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _headline(report: dict) -> str:
    intervals = report.get("intervals")
    rows = []
    keys = [("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"), ("mAP", "map")]
    keys += [(f"AP {n}", f"ap.{n}") for n in CLASS_NAMES]
    keys += [(f"error {n} (called {CLASS_NAMES[1 - i]})", f"error_rate.{n}")
             for i, n in enumerate(CLASS_NAMES)]  # fmt: skip
    for label, key in keys:
        value = _lookup(report, key)
        interval = _lookup(intervals, key) if intervals else None
        rows.append(
            [label, _value(key, value), _interval("intervals." + key, interval) if interval else ""]
        )
    unit = intervals["unit"] if intervals else "images"
    return _table(["figure", "value", f"95% interval (bootstrap over {unit})"], rows)


GENERIC_NAMES = ("val", "test", "train", "all", "val.txt", "test.txt", "ground_truth.txt")


def data_name(dataset: str) -> str:
    """The evaluated folder's name, the page's title ("faces_bfw/val" for a split folder, whose
    own name says little); the full path is in the setting table."""
    path = Path(dataset)
    if path.name in GENERIC_NAMES and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name or str(dataset)


def page_title(report: dict, subtitle: bool = False) -> str:
    """`faces_web: bundled face model` (the window title), or the line under the heading."""
    setting = report.get("setting", {})
    model = setting.get("model_name") or report["model"]
    if not subtitle:
        return f"{data_name(report['dataset'])}: {model}"
    parts = [f"{model} ({report['model']})", f"{report['n']:,} images"]
    parts += [setting["date"]] if setting.get("date") else []
    return " · ".join(parts)


def _summary(report: dict) -> str:
    """The top of the page: the headline figures as cards, and a sentence saying what they mean."""
    intervals = report.get("intervals") or {}
    man, woman = CLASS_NAMES
    cards = [
        ("accuracy", "accuracy"),
        ("balanced accuracy", "balanced_accuracy"),
        ("mAP", "map"),
        (f"{man} called {woman}", f"error_rate.{man}"),
        (f"{woman} called {man}", f"error_rate.{woman}"),
    ]
    html_cards = []
    for label, key in cards:
        value = _lookup(report, key)
        bounds = _lookup(intervals, key) if intervals else None
        interval = f'<div class="range">95%: {_interval("intervals." + key, bounds)}</div>' if (
            bounds
        ) else ""  # fmt: skip
        html_cards.append(
            f'<div class="card"><div class="label">{html.escape(label)}</div>'
            f'<div class="big">{_value(key, value)}</div>{interval}</div>'
        )
    threshold = report["threshold"]
    source = report.get("setting", {}).get("threshold_source") or report.get("threshold_source", "")
    wrong = report["n"] - report["correct"]
    sentence = (
        f"Of {report['n']:,} images, {report['correct']:,} were answered right and {wrong:,} "
        f"wrong: {_pct_text(report['error_rate'][man])} of the men were called women and "
        f"{_pct_text(report['error_rate'][woman])} of the women were called men, answering "
        f"woman when P(woman) is at least {threshold:.3f} ({source}). "
        "The 95% intervals show how far these figures could move on another sample like this one."
    )
    return (
        f'<div class="summary"><div class="cards">{"".join(html_cards)}</div>'
        f"<p>{html.escape(sentence)}</p></div>"
    )


def _pct_text(value) -> str:
    return "n/a" if value is None or value != value else f"{100 * value:.2f}%"


def _uncertain_paragraph(part: dict) -> str:
    low, high = part["band"]
    errors = ", ".join(
        f"{n} " + _value(f"uncertain.error_rate_answered.{n}", part["error_rate_answered"][n])
        for n in CLASS_NAMES
    )
    unanswered = _value("uncertain.unanswered", part["unanswered"], str(part["unanswered"]))
    share = _value("uncertain.unanswered_share", part["unanswered_share"])
    accuracy = _value("uncertain.accuracy_answered", part["accuracy_answered"])
    return (
        f"<p><b>Answering only when sure</b> (uncertain when {low:.3f} &lt; P(woman) &lt; "
        f"{high:.3f}):"
        f" {unanswered} image(s) left uncertain ({share}); on the {part['answered']} answered, "
        f"accuracy {accuracy}, error {errors}. The figures above answer every image.</p>"
    )


def _lookup(data: dict, key: str):
    for part in key.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _confusion_table(report: dict) -> str:
    rows = []
    for i, true in enumerate(CLASS_NAMES):
        cells = [f"<b>true {true}</b> ({report['support'][true]})"]
        for j, given in enumerate(CLASS_NAMES):
            count = report["confusion_matrix"][i][j]
            rate_key = f"confusion_rates.{true}==>{given}"
            rate = report["confusion_rates"][f"{true}==>{given}"]
            count_html = _value(f"confusion_matrix.{i}.{j}", count, str(count))
            cells.append(f"{count_html} ({_value(rate_key, rate)})")
        rows.append(cells)
    return _table(["", *(f"answered {n}" for n in CLASS_NAMES)], rows)


def _coverage_table(rows: list[dict]) -> str:
    body = []
    for k, row in enumerate(rows):
        band = row["band"]
        band_text = "none (always answer)" if band is None else f"{band[0]:.3f}:{band[1]:.3f}"
        body.append(
            [
                f"{100 * row['share']:.0f}%",
                _value(f"coverage.{k}.answered", row["answered"], str(row["answered"])),
                _value(f"coverage.{k}.accuracy", row["accuracy"]),
                f"<code>{band_text}</code>",
            ]
        )
    return _table(["surest share", "answered", "accuracy", "--uncertain band"], body)


def _groups_section(report: dict) -> str:
    out = []
    part = report.get("by_group")
    if part:
        rows = []
        for group, figures in part["groups"].items():
            key = f"by_group.groups.{group}"
            rows.append(
                [
                    html.escape(group),
                    str(figures["n"]),
                    _value(f"{key}.accuracy", figures["accuracy"]),
                ]
                + [_value(f"{key}.error_rate.{n}", figures["error_rate"][n]) for n in CLASS_NAMES]
            )
        heads = ["group", "images", "accuracy", *(f"error {n}" for n in CLASS_NAMES)]
        worst = part.get("worst")
        out.append(f"<h2>By group ({html.escape(str(part['source']))})</h2>")
        out.append(_table(heads, rows))
        if worst:
            out.append(
                f"<p>Worst: {html.escape(worst['group'])}, {worst['class']} error "
                f"{_value('by_group.worst.error_rate', worst['error_rate'])}.</p>"
            )
        out.append(
            _image(_styled(groups_figure, part, "each group's error rates"), "error rates by group")
        )
    part = report.get("by_person")
    if part:
        out.append(f"<h2>By person ({html.escape(str(part['source']))})</h2>")
        out.append(
            "<p>Every person weighs the same, whatever their image count (a person filmed in "
            "dozens of frames would otherwise decide the figure).</p>"
        )
        rows = [
            [
                n,
                str(part["persons"][n]),
                _value(f"by_person.error_rate.{n}", part["error_rate"][n]),
                str(part["wrong_persons"][n]),
            ]
            for n in CLASS_NAMES
        ]
        out.append(_table(["class", "persons", "error rate", "persons wrong on most"], rows))
        out.append(
            "<p>accuracy "
            + _value("by_person.accuracy", part["accuracy"])
            + ", balanced accuracy "
            + _value("by_person.balanced_accuracy", part["balanced_accuracy"])
            + "</p>"
        )
        # the same two error rates counted both ways: a gap means a few persons with many
        # images weigh on the per-image figure
        both = {"per image": report, "per person": part}
        chart = {"groups": {name: {"error_rate": d["error_rate"]} for name, d in both.items()}}
        out.append(_image(_styled(groups_figure, chart, "error rates per image and per person"),
                          "error rates per image and per person"))  # fmt: skip
    return "\n".join(out)


def _gallery(items: Sequence[tuple[str, str, str]]) -> str:
    """Figures of (data URI, caption lines in HTML, css class)."""
    cells = []
    for uri, caption, kind in items:
        image = f'<img src="{uri}" alt="">' if uri else '<div class="missing">unreadable</div>'
        cells.append(f'<figure class="{kind}">{image}<figcaption>{caption}</figcaption></figure>')
    return '<div class="gallery">' + "".join(cells) + "</div>"


def _caption(path: str, label: int, p: float, given: str) -> str:
    name = html.escape(Path(path).name)
    return (
        f'<span class="name" title="{html.escape(path)}">{name}</span><br>'
        f"true {CLASS_NAMES[label]}, answered {given}<br>P(woman) {p:.3f}"
    )


def gallery_indices(
    labels: np.ndarray,
    p_woman: np.ndarray,
    threshold: float,
    band: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(mistakes, most confident first; the answers nearest the threshold), both capped."""
    given = answers(p_woman, threshold, band)
    margin = np.abs(p_woman - threshold)
    wrong = np.flatnonzero((given != labels) & (given != UNCERTAIN_ANSWER))
    wrong = wrong[np.argsort(-margin[wrong], kind="mergesort")][:GALLERY_MISTAKES]
    unsure = np.argsort(margin, kind="mergesort")[:GALLERY_UNCERTAIN]
    return wrong, unsure


# The page's markup and styles, with a $name for each part made here (string.Template: the
# parts are HTML already, escaped where they hold data). Package data: an installed copy has it.
PAGE = Template(resources.files("gender").joinpath("report_page.html").read_text("utf-8"))


def build_page(
    report: dict,
    labels: "np.ndarray | Sequence[int]",
    p_woman: "np.ndarray | Sequence[float]",
    paths: Sequence[str],
    explained: Sequence[tuple[str, np.ndarray, float]] = (),
    band: tuple[float, float] | None = None,
    explain_note: str = "",
) -> str:
    """The whole HTML page of one evaluation, as text (`report_page.html` filled in).

    Args:
        report: the evaluation's JSON dict (`--json`), with `intervals`, `coverage`,
            `threshold_sweep` and `threshold_advice` filled in (`gender.evaluation`).
        labels, p_woman, paths: one entry per image evaluated, for the curves and galleries.
        explained: (path, Grad-CAM overlay RGB, the Keras model's P(woman)) of the first
            mistakes.
        band: the --uncertain band, if any.
        explain_note: which model the Grad-CAM overlays come from.
    """
    labels, p_woman = np.asarray(labels, int), np.asarray(p_woman, float)
    threshold, name = report["threshold"], data_name(report["dataset"])
    uncertain = report.get("uncertain")
    galleries = Galleries(labels, p_woman, paths, threshold, band)
    return PAGE.substitute(
        title=html.escape(page_title(report)),
        heading=html.escape(name),
        subtitle=html.escape(page_title(report, subtitle=True)),
        summary=_summary(report),
        setting=_setting_rows(report),
        headline=_headline(report),
        uncertain=_uncertain_paragraph(uncertain) + "\n" if uncertain else "",
        confusion_table=_confusion_table(report),
        confusion_plot=_image(_styled(confusion_figure, report, name), "confusion matrix"),
        advice=html.escape(advice_sentence(report["threshold_advice"], threshold)),
        sweep_plot=_image(_styled(sweep_figure, report), "error rates against the threshold"),
        pr_roc_plot=_image(
            _styled(pr_roc_figure, report, labels, p_woman), "precision-recall and ROC curves"
        ),  # fmt: skip
        coverage_table=_coverage_table(report["coverage"]),
        coverage_plot=_image(
            _styled(coverage_figure, report["coverage"], labels, p_woman, threshold),
            "accuracy against coverage",
        ),  # fmt: skip
        groups=_groups_section(report),
        mistakes_shown=len(galleries.wrong),
        mistakes_total=galleries.total_wrong,
        mistakes=galleries.of(galleries.wrong) if len(galleries.wrong) else "<p>None.</p>",
        unsure_shown=len(galleries.unsure),
        unsure=galleries.of(galleries.unsure),
        explained=galleries.explained(explained, explain_note),
        glossary="\n".join(
            f"<dt>{html.escape(term)}</dt><dd>{html.escape(text)}</dd>" for term, text in GLOSSARY
        ),
        # the numbers as --json writes them (strict: undefined is null); no name in them can
        # close the script element or open an HTML comment in it
        data=script_json(report),
    )


def _setting_rows(report: dict) -> str:
    """The rows of the "What was evaluated" table: data, images, model, task, threshold, ..."""
    esc = html.escape
    setting = report.get("setting", {})
    counts = ", ".join(f"{n} {report['support'][n]:,}" for n in CLASS_NAMES)
    unreadable = report.get("skipped_unreadable")
    model_name = setting.get("model_name") or report["weights"]  # "bundled face model" or a path
    threshold = report["threshold"]
    rows = [
        ["data", f"<code>{esc(report['dataset'])}</code>"],
        ["images", f"{_value('n', report['n'], format(report['n'], ','))} ({counts})"
                   + (f"; {unreadable} unreadable, left out" if unreadable else "")],
        ["model", f"{esc(report['model'])}: <code>{esc(model_name)}</code>"],
        ["task", esc(str(setting.get("task", "")))],
        ["threshold", _value("threshold", threshold, f"{threshold:.3f}")
                      + f" ({esc(str(setting.get('threshold_source', '')))})"],
        ["backend", esc(str(report.get("backend", "")))],
        ["date", esc(str(setting.get("date", "")))],
    ]  # fmt: skip
    if setting.get("detect_faces"):
        rows.append(["faces", "each image's largest detected face (none found: the whole image)"])
    return "".join(f"<tr><th>{key}</th><td>{value}</td></tr>" for key, value in rows)


class Galleries:
    """The page's thumbnails: the mistakes (most confident first), the answers nearest the
    threshold, and the Grad-CAM overlays of the first mistakes."""

    def __init__(
        self,
        labels: np.ndarray,
        p_woman: np.ndarray,
        paths: Sequence[str],
        threshold: float,
        band: tuple[float, float] | None,
    ) -> None:
        self.labels, self.p_woman, self.paths = labels, p_woman, paths
        self.wrong, self.unsure = gallery_indices(labels, p_woman, threshold, band)
        self.given = answers(p_woman, threshold, band)
        self.total_wrong = int(np.sum((self.given != labels) & (self.given != UNCERTAIN_ANSWER)))

    def caption(self, i: int) -> str:
        """Image `i`'s name, truth and answer."""
        names = {0: CLASS_NAMES[0], 1: CLASS_NAMES[1], UNCERTAIN_ANSWER: "uncertain"}
        return _caption(self.paths[i], self.labels[i], self.p_woman[i], names[self.given[i]])

    def of(self, indices: Sequence[int]) -> str:
        """Thumbnails of these images, each captioned."""
        return _gallery([(thumbnail(self.paths[i]), self.caption(i), "") for i in indices])

    def explained(self, explained: Sequence[tuple[str, np.ndarray, float]], note: str) -> str:
        """The Grad-CAM section (ending in a newline), or "" without overlays."""
        if not explained:
            return ""
        shown = {path: i for i, path in enumerate(self.paths)}
        items = [
            (_jpeg_uri(rgb, 240), f"{self.caption(shown[path])}; Keras {keras_p:.3f}", "wide")
            for path, rgb, keras_p in explained
        ]
        return (
            f"<h2>Why: Grad-CAM of the first {len(explained)} mistakes</h2>\n"
            '<p class="note">Colour scale from blue (no evidence) to red: the regions that '
            f"pushed the model most towards its (wrong) answer. {html.escape(note)}</p>\n"
            f"{_gallery(items)}\n"
        )


def run_page(run_dir: Path, evaluation: "Evaluation") -> Path:
    """report.html in a run folder at the end of training: the page of best.keras on the
    validation split (`gender.evaluation.evaluate_run`)."""
    path = run_dir / "report.html"
    samples = evaluation.samples
    write_page(path, evaluation.report, samples.labels, evaluation.p_woman, samples.paths)
    return path


def write_page(path: str | Path, report: dict, *args: object, **kwargs: object) -> int:
    """`build_page(report, ...)` written atomically to `path`; returns its size in bytes."""
    text = build_page(report, *args, **kwargs)
    write_text(path, text)
    return len(text.encode())


def explain_mistakes(
    weights: str | Path, paths: Sequence[str], detect: bool, count: int
) -> list[tuple[str, np.ndarray, float]]:
    """(path, Grad-CAM overlay, P(woman)) of the first `count` of `paths`, from the .keras
    model (Grad-CAM needs its gradients; an int8 or float32 LiteRT backend has none), whose
    P(woman) can differ a little from the backend's that the page shows."""
    if count <= 0 or not paths:
        return []
    predictor = Predictor.load(weights, backend="keras")
    out = []
    for path in list(paths)[:count]:
        try:
            rgb = read_image(path)
        except (BadImageError, OSError):
            continue
        found = predictor.faces(rgb)[:1] if detect else []
        if found:
            faces, keras_p = [found[0].face], found[0].p_woman
        else:
            faces = None
            keras_p = float(predictor.classify(resize(rgb, predictor.size)[None])[0])
        out.append((path, predictor.explain(rgb, faces), keras_p))
    return out
