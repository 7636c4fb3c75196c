"""Memory: peak resident memory (RSS) of gender_train.py training on faces_utk, in a subprocess.

    python bench/bench_memory.py                          # cnn7 150x150, 1 epoch, all of faces_utk
    python bench/bench_memory.py --model mobilenetv2 --epochs 2 --head-epochs 1

The trainer keeps the decoded images (and a frozen-prefix cache) in RAM while their total fits
GENDER_MEMORY_BUDGET_MB (default 2048), else in files in the run folder; it prints which. The
peak is the child's ru_maxrss. Target: under 4 GB.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

from machine import FACES_UTK, ROOT, SHARED, describe

LIMIT_GB = 4.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FACES_UTK))
    parser.add_argument("--model", default="cnn7")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--head-epochs", type=int, default=1, help="transfer models")
    parser.add_argument("--budget-mb", type=int, help="GENDER_MEMORY_BUDGET_MB for the run")
    args = parser.parse_args(argv)

    print(describe())
    env = dict(os.environ)
    if args.budget_mb is not None:
        env["GENDER_MEMORY_BUDGET_MB"] = str(args.budget_mb)
    budget = int(env.get("GENDER_MEMORY_BUDGET_MB", "2048"))
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable, str(ROOT / "gender_train.py"), "--data", args.data,
            "--model", args.model, "--epochs", str(args.epochs), "--out", out,
            "--head-epochs", str(args.head_epochs), "--augment", "flip",
        ]  # fmt: skip
        backbone = SHARED / "weights" / "mobilenet_v2_imagenet_notop.weights.h5"
        if args.model == "mobilenetv2" and backbone.is_file():
            command += ["--backbone-weights", str(backbone)]
        print(f"running: {' '.join(command[1:])}  (GENDER_MEMORY_BUDGET_MB={budget})")
        start = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"training failed:\n{result.stderr[-2000:]}")
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9  # KiB on Linux
    for line in result.stdout.splitlines():
        if line.lstrip().startswith(("decoded images", "train:", "val:", "phase", "model ")):
            print(f"  trainer: {line.strip()}")
    print(f"\npeak RSS of the training process: {peak_gb:.2f} GB ({seconds:.0f} s run)")
    verdict = "met" if peak_gb < LIMIT_GB else "NOT met"
    print(f"target < {LIMIT_GB:.0f} GB: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
