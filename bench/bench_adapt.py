"""How many labelled images a new setting needs: the learning curve of `gender_train.py adapt`.

    python bench/bench_adapt.py SOURCE.keras --setting GRID=data/heldout/GRID \
        --setting MIT=data/heldout/MIT --forget data/loco3/val --by-person '^([^_]+__[^_.]+)'
    python bench/bench_adapt.py weights/pretrained/face.keras \
        --setting children=data/utk_children_val --forget data/faces_bfw/val

For each setting (a {man,woman} folder the source model never trained on) and draw, its people
are shuffled and about --test-share of each class's images (whole people) become the test part;
the model is adapted on the first k images of the others (whole people, the last one cut, each
class in its share of the setting) and scored on the test part at the adapted run's threshold.
k = 0 is the source model at its own threshold. `forgotten` is the drop in accuracy on --forget
(the source model's own validation images) against the source model. Results are appended to
--out/results.jsonl as they come (a rerun skips what is there) and the tables printed at the end.

The unlabelled axis (--unlabelled U ...; -1: all there are): with k labelled images, U images
of the draw's other adaptation people (never the test part's), in a random order and without
their labels, go to `adapt --unlabelled` (a flat folder); U = 0 adapts on the labels alone.

    python bench/bench_adapt.py SOURCE.keras --setting GRID=data/heldout/GRID ... \
        --k 250 --unlabelled 0 -1 --draws 1
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import describe  # noqa: E402

K_VALUES = (0, 25, 50, 100, 250, 500)


def parse_setting(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=DIR")
    return name, folder


def parse_override(text: str) -> tuple[str, object]:
    """key=value for an AdaptConfig field, the value read as JSON when it parses."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIELD=VALUE")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def person_order(samples, pattern: str | None, rng) -> list[list[int]]:
    """Each class's people (lists of image indices) in a random order."""
    from gender.data import person_ids

    ids = person_ids(samples.paths, pattern) if pattern else list(samples.paths)
    orders = []
    for label in (0, 1):
        people: dict[str, list[int]] = {}
        for i in np.flatnonzero(samples.labels == label):
            people.setdefault(ids[i], []).append(int(i))
        keys = sorted(people)
        rng.shuffle(keys)
        orders.append([people[k] for k in keys])
    return orders


def take(people: list[list[int]], count: int) -> list[int]:
    """The first `count` images of `people` in order (the last person cut)."""
    chosen = []
    for images in people:
        if len(chosen) >= count:
            break
        chosen += images[: count - len(chosen)]
    return chosen


def draw_split(samples, pattern, draw: int, test_share: float):
    """(test index, per-class ordered adaptation people) of one draw."""
    orders = person_order(samples, pattern, np.random.default_rng(1000 + draw))
    test, pool = [], []
    for label, people in enumerate(orders):
        wanted = test_share * int(np.sum(samples.labels == label))
        held, n = [], 0
        while people and n < wanted:
            held.append(people.pop())
            n += len(held[-1])
        test += [i for p in held for i in p]
        pool.append(people)
    return np.asarray(sorted(test)), pool


def adaptation_index(samples, pool, k: int) -> np.ndarray:
    """k images, each class in its share of the setting (at least 4 of each)."""
    from gender.adapt import MIN_PER_CLASS

    share = float(np.mean(samples.labels == 1))
    women = max(MIN_PER_CLASS, round(k * share))
    return np.asarray(sorted(take(pool[0], k - women) + take(pool[1], women)))


def unlabelled_index(samples, pool, index: np.ndarray, count: int, draw: int) -> np.ndarray:
    """`count` (-1: all) images of the adaptation people `pool` not among the labelled
    `index`, in a random order of the draw."""
    rest = sorted(set(i for people in pool for p in people for i in p) - set(index.tolist()))
    order = np.random.default_rng(2000 + draw).permutation(rest)
    return np.asarray(sorted(order if count < 0 else order[:count]), int)


def link_flat(samples, index, root: Path) -> Path:
    """The images `index` linked into one folder, no labels."""
    root.mkdir(parents=True, exist_ok=True)
    for i in index:
        path = Path(samples.paths[i])
        (root / path.name).symlink_to(path.resolve())
    return root


def link_folder(samples, index, root: Path) -> Path:
    from gender import CLASS_NAMES

    for i in index:
        folder = root / CLASS_NAMES[samples.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        path = Path(samples.paths[i])
        (folder / path.name).symlink_to(path.resolve())
    return root


def score(labels, p_woman, threshold: float) -> dict:
    """Accuracy, balanced accuracy and both error rates at `threshold`; also two figures that no
    threshold choice moves, for comparing what the features separate: the ROC AUC, and the
    balanced accuracy at the test part's own equal-error threshold (an oracle no user has)."""
    from gender.metrics import equal_error_threshold, evaluate, roc_curve

    report = evaluate(labels, p_woman, threshold)
    false_positive, true_positive = roc_curve(np.asarray(labels) == 1, p_woman)
    oracle = evaluate(labels, p_woman, equal_error_threshold(labels, p_woman))
    return {
        "accuracy": report["accuracy"],
        "balanced": report["balanced_accuracy"],
        "error_man": report["error_rate"]["man"],
        "error_woman": report["error_rate"]["woman"],
        "auc": float(np.trapezoid(true_positive, false_positive)),
        "balanced_at_own_eer": oracle["balanced_accuracy"],
    }


def predict(model, images) -> np.ndarray:
    return model.predict(images, batch_size=64, verbose=0).ravel()


def mix_weights(model, start: list, adapted: list, share: float) -> None:
    """Set `model`'s weights to start + share * (adapted - start)."""
    model.set_weights([s + share * (a - s) for s, a in zip(start, adapted)])


def mean_spread(values) -> str:
    values = 100 * np.asarray(values, float)
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def print_tables(rows: list[dict], source_forget: dict) -> None:
    """Per setting: mean ± spread (sample standard deviation) over draws, then the thresholds."""
    for setting in dict.fromkeys(r["setting"] for r in rows):
        part = [r for r in rows if r["setting"] == setting]
        print(f"\n{setting}: test parts of {part[0]['test_images']} images (draw 0), people "
              "not adapted on; forgotten: points of accuracy lost on --forget")  # fmt: skip
        print("| k | unlabelled | draws | balanced | error man | error woman | ROC AUC | "
              "forgotten | wall s |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        for k, u in sorted({(r["k"], r.get("u", 0)) for r in part}):
            done = [r for r in part if r["k"] == k and r.get("u", 0) == u]
            cells = [mean_spread([r["test"][m] for r in done])
                     for m in ("balanced", "error_man", "error_woman", "auc")
                     if all(m in r["test"] for r in done)]  # fmt: skip
            forgot = [source_forget["accuracy"] - r["forget"]["accuracy"] for r in done]
            wall = f"{np.mean([r['seconds'] for r in done]):.0f}" if k else "-"
            used = [r.get("unlabelled_images", 0) for r in done]
            u_text = "all" if u < 0 else str(u)
            u_text += f" ({int(np.mean(used))})" if u < 0 else ""
            print(f"| {k} | {u_text} | {len(done)} | {' | '.join(cells)} | "
                  f"{mean_spread(forgot) if k else '-'} | {wall} |")  # fmt: skip
        adapted = [r for r in part if r["k"] and "test_at" in r]
        if adapted:
            print("\nbalanced (mean |error man - error woman|) at each candidate threshold:")
            names = ["adapted", *adapted[0]["test_at"]]
            print("| k | runs | " + " | ".join(names) + " |")
            print("|---|---|" + "---|" * len(names))
            for k, u in sorted({(r["k"], r.get("u", 0)) for r in adapted}):
                done = [r for r in adapted if r["k"] == k and r.get("u", 0) == u]
                cells = []
                for name in names:
                    scores = [r["test"] if name == "adapted" else r["test_at"][name]
                              for r in done]  # fmt: skip
                    gap = np.mean([abs(x["error_man"] - x["error_woman"]) for x in scores])
                    cells.append(f"{100 * np.mean([x['balanced'] for x in scores]):.1f} "
                                 f"({100 * gap:.0f})")  # fmt: skip
                print(f"| {k} / {u} | {len(done)} | " + " | ".join(cells) + " |")
    print(
        f"\nsource model on --forget: accuracy {100 * source_forget['accuracy']:.2f}%, "
        f"balanced {100 * source_forget['balanced']:.2f}%"
    )


def main(argv=None) -> int:
    from gender.console import quiet

    quiet()  # the commands' environment (gender.cli sets it there): a bench times what users run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the model to adapt (.keras or run folder)")
    parser.add_argument(
        "--setting", type=parse_setting, action="append", required=True, metavar="NAME=DIR",
        help="a {man,woman} folder of a held-out setting",
    )  # fmt: skip
    parser.add_argument("--forget", required=True, help="the source's validation images")
    parser.add_argument("--by-person", help="person-id regex (default: every image its own)")
    parser.add_argument("--k", type=int, nargs="+", default=list(K_VALUES))
    parser.add_argument("--unlabelled", type=int, nargs="+", default=[0], metavar="U",
                        help="unlabelled crops given with each k > 0 (-1: all the draw's other "
                        "adaptation images; default 0)")  # fmt: skip
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--test-share", type=float, default=0.35)
    parser.add_argument(
        "--set", type=parse_override, action="append", default=[], metavar="FIELD=VALUE",
        help="an AdaptConfig field, e.g. l2sp=0",
    )  # fmt: skip
    parser.add_argument("--mixes", type=float, nargs="*", default=[],
                        help="also score the weights this share of the way from the source's "
                        "to the adapted ones (weight-space ensembling)")  # fmt: skip
    parser.add_argument("--out", default="weights/bench_adapt")
    parser.add_argument("--keep-runs", action="store_true", help="keep each adapted run folder")
    args = parser.parse_args(argv)

    from gender.adapt import AdaptConfig, adapt
    from gender.data import decode_images, list_folder
    from gender.predictor import load_trained

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    rows = (
        [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    )
    overrides = AdaptConfig.renamed(dict(args.set))  # old setting names read as today's
    print(describe())
    print(f"source {args.source}; adapt overrides {overrides or 'none'}")
    source, info = load_trained(args.source)
    size = tuple(info.image_size)
    source_threshold = info.decision_threshold
    forget = list_folder(args.forget)
    forget_images, forget = decode_images(forget, size)
    source_forget = score(forget.labels, predict(source, forget_images), source_threshold)
    print(f"--forget {args.forget}: {len(forget)} images; source {source_forget}")

    for name, folder in args.setting:
        samples = list_folder(folder)
        images, samples = decode_images(samples, size)
        source_p = predict(source, images)
        for draw in range(args.draws):
            test, pool = draw_split(samples, args.by_person, draw, args.test_share)
            for k, u in [(n, m) for n in args.k for m in (args.unlabelled if n else [0])]:
                if any(r["setting"] == name and r["draw"] == draw and r["k"] == k
                       and r.get("u", 0) == u for r in rows):  # fmt: skip
                    continue
                row = {"setting": name, "draw": draw, "k": k, "u": u, "test_images": len(test),
                       "overrides": overrides}  # fmt: skip
                if k == 0:
                    row["test"] = score(samples.labels[test], source_p[test], source_threshold)
                    row["forget"], row["seconds"] = source_forget, 0.0
                else:
                    index = adaptation_index(samples, pool, k)
                    work = out / f"{name}-d{draw}-k{k}-u{u}"
                    shutil.rmtree(work, ignore_errors=True)
                    data = link_folder(samples, index, work / "data")
                    # the threshold's folds keep each person whole, as a user's --by-person
                    settings = {"by_person": args.by_person, **overrides}
                    if u:
                        extra = unlabelled_index(samples, pool, index, u, draw)
                        row["unlabelled_images"] = len(extra)
                        settings["unlabelled"] = str(link_flat(samples, extra, work / "u"))
                    config = AdaptConfig(data=str(data), weights=args.source, out=str(work),
                                         seed=1337 + draw, **settings)  # fmt: skip
                    started = time.perf_counter()
                    run_dir = adapt(config)
                    row["seconds"] = round(time.perf_counter() - started, 1)
                    model, run_info = load_trained(run_dir)
                    threshold = float(run_info.threshold)
                    row["threshold"] = threshold
                    row["images"] = {"man": int(np.sum(samples.labels[index] == 0)),
                                     "woman": int(np.sum(samples.labels[index] == 1))}  # fmt: skip
                    test_p = predict(model, images[test])
                    row["test"] = score(samples.labels[test], test_p, threshold)
                    # the same model at the other thresholds the rule could have chosen
                    others = {"source": source_threshold, "half": 0.5,
                              "out_of_fold": run_info.threshold_out_of_fold}  # fmt: skip
                    row["test_at"] = {
                        name: score(samples.labels[test], test_p, value)
                        for name, value in others.items() if value is not None
                    }  # fmt: skip
                    forget_p = predict(model, forget_images)
                    row["forget"] = score(forget.labels, forget_p, threshold)
                    if run_info.averaged_models:  # the final fit alone, for comparison
                        last, _ = load_trained(run_dir / "last.keras")
                        last_p = predict(last, images[test])
                        row["last_alone"] = {
                            "test": score(samples.labels[test], last_p, threshold),
                            "test_at": {name: score(samples.labels[test], last_p, value)
                                        for name, value in others.items() if value is not None},
                            "forget": score(forget.labels, predict(last, forget_images),
                                            threshold),
                        }  # fmt: skip
                    # how much of what is forgotten is the new threshold alone
                    row["forget_at_source"] = score(forget.labels, forget_p, source_threshold)
                    row["mixed"] = {}
                    adapted = model.get_weights()
                    for share in args.mixes:  # weights part way back to the source's
                        mix_weights(model, source.get_weights(), adapted, share)
                        row["mixed"][str(share)] = {
                            "test": score(samples.labels[test], predict(model, images[test]),
                                          threshold),
                            "forget": score(forget.labels, predict(model, forget_images),
                                            threshold),
                        }  # fmt: skip
                    if not args.keep_runs:
                        shutil.rmtree(work, ignore_errors=True)
                rows.append(row)
                with open(results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                test_scores, forget_acc = row["test"], 100 * row["forget"]["accuracy"]
                print(f"RESULT {name} draw {draw} k {k} u {u}: balanced "
                      f"{100 * test_scores['balanced']:.2f}%, errors "
                      f"{100 * test_scores['error_man']:.1f} / "
                      f"{100 * test_scores['error_woman']:.1f}, "
                      f"forget acc {forget_acc:.2f}%, {row['seconds']:.0f} s",
                      flush=True)  # fmt: skip
    rows = [r for r in rows if r["setting"] in dict(args.setting)]
    print_tables(rows, source_forget)
    if any("last_alone" in r for r in rows):  # average_folds: the final fit alone, same runs
        print("\nThe same runs, the final fit alone (average_folds off), same thresholds:")
        # (a run without folds, e.g. one person of a class, had nothing to average: as it is)
        alone = [{**r, **r.get("last_alone", {})} for r in rows]
        # rows scored before the final fit's own candidate thresholds were recorded show none
        alone = [r if "test_at" in r.get("last_alone", {}) else
                 {k: v for k, v in r.items() if k != "test_at"} for r in alone]  # fmt: skip
        print_tables(alone, source_forget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
