"""The installed command against the checkout: cold prediction of one photo, both in one run.

    python bench/bench_installed.py                 # Grace Hopper's portrait (face detection)
    python bench/bench_installed.py --image crop.jpg --runs 9

Builds the wheel from this checkout, installs it (without dependencies: this Python has them)
into a temporary folder, then times `gender-predict PHOTO` run from an empty folder against
`python gender_single_predict.py PHOTO` in the checkout, alternating, each a fresh process with
no weights argument. Prints the wheel's size, each median and their ratio (installed / checkout).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import ROOT, describe


def timed(argv, cwd, env) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(map(str, argv))}\n{done.stderr}")
    return seconds, done.stdout.strip().splitlines()[-1]


def main(argv=None) -> int:
    import matplotlib

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--image",
        default=str(Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")),
        help="the photo (default: matplotlib's Grace Hopper portrait)",
    )
    parser.add_argument("--runs", type=int, default=7, help="runs of each (default 7)")
    args = parser.parse_args(argv)
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
             "-w", str(tmp / "dist"), str(ROOT)],
            check=True, cwd=tmp,
        )  # fmt: skip
        (wheel,) = (tmp / "dist").glob("*.whl")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
             str(tmp / "site"), str(wheel)],
            check=True,
        )  # fmt: skip
        empty = tmp / "empty"
        empty.mkdir()
        installed_env = {**os.environ, "PYTHONPATH": str(tmp / "site")}
        commands = {
            "installed": ([str(tmp / "site" / "bin" / "gender-predict"), args.image], empty,
                          installed_env),
            "checkout": ([sys.executable, str(ROOT / "gender_single_predict.py"), args.image],
                         ROOT, dict(os.environ)),
        }  # fmt: skip
        times = {name: [] for name in commands}
        answers = {}
        for _ in range(args.runs):
            for name, (command, cwd, env) in commands.items():
                seconds, answers[name] = timed(command, cwd, env)
                times[name].append(seconds)
        print(f"wheel: {wheel.name}, {wheel.stat().st_size / 1e6:.1f} MB")
        for name in commands:
            print(f"{name:<10} median {statistics.median(times[name]):.3f} s over {args.runs} "
                  f"(min {min(times[name]):.3f}): {answers[name]}")  # fmt: skip
        ratio = statistics.median(times["installed"]) / statistics.median(times["checkout"])
        print(f"installed / checkout: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
