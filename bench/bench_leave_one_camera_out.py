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
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import MOBILENET_WEIGHTS, ROOT, describe

sys.path.insert(0, str(ROOT))

SUBSET = re.compile(r"^([^_]+)__")
# The person key within a subset: "GRID__0001_..." -> GRID__0001, "cctv__000_45_1" -> cctv__000.
PERSON = r"^([^_]+__[^_.]+)"
BUDGETS = {
    # a frozen ImageNet backbone, its head trained on a cached pass: the trend, in minutes
    "small": [
        "--trainable-blocks",
        "0",
        "--head-epochs",
        "0",
        "--epochs",
        "4",
        "--patience",
        "2",
        "--cache-views",
        "2",
    ],  # fmt: skip
    # the bundled pedestrian model's recipe
    "full": [
        "--trainable-blocks",
        "12",
        "--head-epochs",
        "2",
        "--epochs",
        "12",
        "--patience",
        "4",
        "--cache-views",
        "4",
        "--augment",
        "flip,rotate,shift,zoom,blur,brightness,contrast,saturation",
    ],  # fmt: skip
}


def pooled_files(folders) -> dict[str, list[tuple[Path, str]]]:
    """{subset: [(path, class name), ...]} over every folder's man/ and woman/ images."""
    by_subset: dict[str, list[tuple[Path, str]]] = {}
    for folder in folders:
        for class_name in ("man", "woman"):
            for path in sorted((Path(folder) / class_name).glob("*")):
                match = SUBSET.match(path.name)
                if match and path.is_file():
                    by_subset.setdefault(match.group(1), []).append((path, class_name))
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="folders of {man,woman} images named SUBSET__...")
    parser.add_argument("--subsets", nargs="+", required=True, help="camera networks to leave out")
    parser.add_argument("--budget", choices=BUDGETS, default="small")
    parser.add_argument("--per-class", type=int, help="at most N training images per class and "
                        "subset (default: small 300, full all)")  # fmt: skip
    parser.add_argument("--image-size", default="224x96")
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)
    per_class = args.per_class or (300 if args.budget == "small" else None)

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
             "--task", "pedestrian", "--model", "mobilenetv2", "--image-size", args.image_size,
             "--backbone-weights", str(MOBILENET_WEIGHTS), "--by-person", PERSON,
             "--val-split", "0.15", "--batch-size", "64", "--seed", str(args.seed),
             "--out", str(runs), *BUDGETS[args.budget]])  # fmt: skip
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
