"""Frozen-prefix cache: seconds per epoch and validation accuracy with and without it, one run.

    python bench/bench_cache.py                       # mobilenetv2 on ../shared/data/faces_web
    python bench/bench_cache.py --model vgg16 --per-class 150 --epochs 3

Both trainings use the same images, split, seed, flip augmentation and phases; only --cache differs.
The first epoch with the cache includes computing the cache; later epochs run only the top.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
BACKBONES = {
    "mobilenetv2": SHARED / "weights" / "mobilenet_v2_imagenet_notop.weights.h5",
    "vgg16": SHARED / "weights" / "vgg16_imagenet_notop.weights.h5",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "data" / "faces_web"))
    parser.add_argument("--model", default="mobilenetv2", choices=sorted(BACKBONES))
    parser.add_argument("--per-class", type=int, default=300, help="images per class used")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trainable-blocks", type=int, default=2)
    args = parser.parse_args(argv)

    import numpy as np

    import gender_train
    from gender.runs import read_history

    work = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    rng = np.random.default_rng(0)
    for name in ("man", "woman"):
        files = sorted(p for p in (Path(args.data) / name).iterdir() if p.is_file())
        (work / "data" / name).mkdir(parents=True)
        for path in rng.choice(files, min(args.per_class, len(files)), replace=False):
            os.symlink(path.resolve(), work / "data" / name / path.name)

    results = {}
    for cache in ("off", "auto"):
        started = time.perf_counter()
        gender_train.main([
            "--data", str(work / "data"), "--model", args.model, "--epochs", str(args.epochs),
            "--head-epochs", "1", "--trainable-blocks", str(args.trainable_blocks),
            "--backbone-weights", str(BACKBONES[args.model]), "--augment", "flip",
            "--cache", cache, "--out", str(work / cache), "--patience", "100",
        ])  # fmt: skip
        total = time.perf_counter() - started
        history = read_history(next((work / cache).iterdir()))
        results[cache] = (history, total)

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{args.model}, {2 * args.per_class} images (80% train), {args.epochs} epochs "
        f"(1 head + {args.epochs - 1} fine-tuning {args.trainable_blocks} blocks)"
    )
    print(f"{'cache':<6}{'epoch s (each)':<40}{'total s':>9}{'final val acc':>15}")
    for cache, (history, total) in results.items():
        seconds = " ".join(f"{row['seconds']:.1f}" for row in history)
        print(f"{cache:<6}{seconds:<40}{total:>9.1f}{history[-1]['val_accuracy']:>15.4f}")
    off, on = results["off"][0], results["auto"][0]
    # Epochs after a phase's first (which computes that phase's cache) show the steady state.
    steady = [(a["seconds"], b["seconds"]) for a, b in zip(off[2:], on[2:])]
    if steady:
        ratio = sum(a for a, _ in steady) / sum(b for _, b in steady)
        print(f"steady-state fine-tuning epoch speed-up with the cache: {ratio:.1f}x")
    print(f"whole-run speed-up: {results['off'][1] / results['auto'][1]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
