"""What to expect on a camera the pedestrian model never saw: leave one camera network out.

    python bench/bench_leave_one_camera_out.py data/ped/train data/ped/val data/ped_test \
        --subsets GRID MIT i-LID --budget small            # ~10 min on 2 cores: frozen backbone
    python bench/bench_leave_one_camera_out.py ... --budget full --out weights/loco   # hours

The images are pooled from the folders given ({man,woman} each), and each file's camera network is
the prefix of its name before "__" (`GRID__0001_....png`, as ../shared/tools/extra_data.py names
PETA; name pedestrian_cctv's files `cctv__000_45_1.jpg`). For each subset S: a model is trained on
every other subset (validation split by person, for the epoch only), then evaluated on all of S,
which it never saw. The table gives balanced accuracy and each class's error per held-out subset.
Nothing is written into the data folders: each run's training set is a folder of links under --out.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import MOBILENET_WEIGHTS, ROOT, describe

sys.path.insert(0, str(ROOT))

# The person key within a subset: "GRID__0001_..." -> GRID__0001, "cctv__000_45_1" -> cctv__000.
PERSON = r"^([^_]+__[^_.]+)"
# a frozen ImageNet backbone, its head trained on a cached pass: the trend, in minutes
SMALL_BUDGET = ["--trainable-blocks", "0", "--head-epochs", "0", "--epochs", "4",
                "--patience", "2", "--cache-views", "2"]  # fmt: skip
# --budget full: these training flags of the bundled pedestrian model (its JSON), so the table
# always says what its recipe does on a camera it never saw
RECIPE_FLAGS = ("model", "image_size", "trainable_blocks", "head_epochs", "epochs", "patience",
                "cache_views", "augment", "fine_tune_lr", "lr", "batch_size",
                "label_smoothing", "balance_groups", "weigh_persons")  # fmt: skip


def recipe_flags(info_path: Path) -> list:
    """gender_train.py flags recorded in a run.json or bundled model JSON (a run's `flags`)."""
    from gender import UserError
    from gender.config import read_run_info

    try:
        flags = read_run_info(info_path.parent, info_path.name).flags
    except UserError as err:
        sys.exit(f"error: {err}")
    if not flags:
        sys.exit(f"error: {info_path}: no such run.json or bundled model JSON with training flags")
    argv = []
    for name in RECIPE_FLAGS:
        if flags.get(name) is not None:
            argv += [f"--{name.replace('_', '-')}", str(flags[name])]
    return argv


def pooled_files(folders) -> dict[str, list[tuple[Path, str]]]:
    """{subset: [(path, class name), ...]} over every folder's man/ and woman/ images."""
    from gender import CLASS_NAMES
    from gender.data import list_folder
    from gender.groups import NO_GROUP, group_names

    by_subset: dict[str, list[tuple[Path, str]]] = {}
    for folder in folders:
        samples = list_folder(folder)
        for path, label, subset in zip(
            samples.paths, samples.labels, group_names(samples.paths, "subset")
        ):
            if subset != NO_GROUP:  # a file not named SUBSET__...
                by_subset.setdefault(subset, []).append((Path(path), CLASS_NAMES[label]))
    return by_subset


def link_tree(files, root: Path, per_class: int | None, seed: int) -> Path:
    """root/{man,woman}/ of links to `files`, at most `per_class` of each (every n-th file)."""
    for class_name in ("man", "woman"):
        chosen = [p for p, c in files if c == class_name]
        if per_class and len(chosen) > per_class:
            step = len(chosen) / per_class
            chosen = [chosen[int(i * step)] for i in range(per_class)]
        (root / class_name).mkdir(parents=True, exist_ok=True)
        for path in chosen:
            os.symlink(path.resolve(), root / class_name / path.name)
    return root


def run(command) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(map(str, command))} failed:\n{result.stderr[-2000:]}")


def main(argv=None) -> int:
    from gender.console import quiet

    quiet()  # the commands' environment (gender.cli sets it there): a bench times what users run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="folders of {man,woman} images named SUBSET__...")
    parser.add_argument("--subsets", nargs="+", required=True, help="camera networks to leave out")
    parser.add_argument("--budget", choices=("small", "full"), default="small",
                        help="full: the bundled pedestrian model's recipe")  # fmt: skip
    parser.add_argument("--per-class", type=int, help="at most N training images per class and "
                        "subset (default: small 300, full all)")  # fmt: skip
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument(
        "--recipe",
        default=str(ROOT / "weights" / "pretrained" / "pedestrian.json"),
        help="--budget full trains with the flags recorded in this run.json or bundled model "
        "JSON (default: the bundled pedestrian model's), e.g. a candidate run's",
    )
    args = parser.parse_args(argv)
    per_class = args.per_class or (300 if args.budget == "small" else None)
    if args.budget == "full":
        recipe = recipe_flags(Path(args.recipe))
    else:
        recipe = ["--model", "mobilenetv2", "--image-size", "224x96", "--batch-size", "64",
                  *SMALL_BUDGET]  # fmt: skip

    by_subset = pooled_files(args.data)
    unknown = [s for s in args.subsets if s not in by_subset]
    if unknown:
        sys.exit(
            f"error: no images of subset(s) {', '.join(unknown)}; found {', '.join(by_subset)}"
        )
    print(describe())
    print(f"subsets: {', '.join(f'{s} {len(f)}' for s, f in sorted(by_subset.items()))}")
    print(
        f"budget {args.budget}: at most {per_class or 'all'} training images per class and subset"
    )
    print(f"training flags: {' '.join(recipe)}")
    work = Path(args.out or tempfile.mkdtemp(prefix="loco-"))
    rows = []
    for held_out in args.subsets:
        start = time.time()
        root = work / f"without-{held_out}"
        train_root = root / "train_data"
        for subset, files in sorted(by_subset.items()):
            if subset != held_out:
                link_tree(files, train_root / subset, per_class, args.seed)
        test_root = link_tree(by_subset[held_out], root / "held_out", None, args.seed)
        runs = root / "runs"
        run([sys.executable, "gender_train.py", "--data",
             *sorted(str(p) for p in train_root.iterdir()),
             "--task", "pedestrian", "--backbone-weights", str(MOBILENET_WEIGHTS),
             "--by-person", PERSON, "--val-split", "0.15", "--seed", str(args.seed),
             "--out", str(runs), *recipe])  # fmt: skip
        run_dir = max(runs.iterdir())
        report_path = root / "held_out_report.json"
        run([sys.executable, "gender_mAP.py", str(test_root), str(run_dir / "best.keras"),
             "--json", str(report_path)])  # fmt: skip
        report = json.loads(report_path.read_text())
        rows.append((held_out, report, time.time() - start))
        print(f"  {held_out}: balanced {100 * report['balanced_accuracy']:.2f}% "
              f"({time.time() - start:.0f} s; run {run_dir})", flush=True)  # fmt: skip

    print("\n| held-out subset | images (man / woman) | accuracy | balanced | error man / woman |")
    print("|---|---|---|---|---|")
    for subset, report, _ in rows:
        support, errors = report["support"], report["error_rate"]
        print(f"| {subset} | {report['n']} ({support['man']} / {support['woman']}) | "
              f"{100 * report['accuracy']:.2f}% | {100 * report['balanced_accuracy']:.2f}% | "
              f"{100 * errors['man']:.1f}% / {100 * errors['woman']:.1f}% |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
