"""Cold start: wall time of one `gender_single_predict.py` answer, from process start to exit.

    python bench/bench_cold_start.py                      # bundled face model, a faces_utk crop
    python bench/bench_cold_start.py --portrait me.jpg    # also a portrait with face detection

Each command runs in a fresh process (the time includes Python, imports, model load, decode,
inference and printing); the figure is the median of --runs (3 for the Keras path). Targets: an
already-cropped face with the fast path within 1.0 s; a portrait with face detection within 2 s.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from machine import FACES_UTK, ROOT, describe, face_weights

CLI = ROOT / "gender_single_predict.py"


def wall_times(argv, runs: int) -> tuple[list[float], str]:
    """Seconds from process start to exit for each of `runs` runs, and the last output."""
    times, output = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(CLI), *argv], capture_output=True, text=True, cwd=ROOT
        )
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"failed: {' '.join(argv)}\n{result.stderr}")
        output = result.stdout.strip().splitlines()[-1]
    return times, output


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="a face crop (default: the first faces_utk woman)")
    parser.add_argument("--portrait", help="a photo with a face to detect (needs face detection)")
    parser.add_argument("--weights", help="default: weights/pretrained/face.keras")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)

    print(describe())
    weights = face_weights(args.weights)
    image = args.image or str(next(iter(sorted((FACES_UTK / "woman").iterdir()))))
    help_text = subprocess.run(
        [sys.executable, str(CLI), "--help"], capture_output=True, text=True
    ).stdout
    no_detect = ["--no-detect"] if "--no-detect" in help_text else []
    print(f"model: {weights}; image: {image}")

    baseline, _ = wall_times(["--help"], 3)
    rows = [("python + argparse only (--help)", baseline, "")]
    # auto: what a user gets (the int8 export, float32 again near the threshold)
    for backend, runs in (("auto", args.runs), ("keras", 3)):
        times, out = wall_times([image, str(weights), *no_detect, "--backend", backend], runs)
        rows.append((f"face crop, {backend} {' '.join(no_detect)}", times, out))
    if args.portrait:
        # Detection on: the fast path detects with LiteRT too, the Keras path with `mtcnn`.
        for backend, runs in (("auto", args.runs), ("keras", 3)):
            times, out = wall_times([args.portrait, str(weights), "--backend", backend], runs)
            rows.append((f"portrait with face detection, {backend}", times, out))

    print(f"\n{'command':44} {'median s':>9} {'min s':>7} {'max s':>7}  runs")
    for name, times, _ in rows:
        print(
            f"{name:44} {statistics.median(times):9.3f} {min(times):7.3f} {max(times):7.3f}  "
            f"{len(times)}"
        )
    fast = statistics.median(rows[1][1])
    keras = statistics.median(rows[2][1])
    print(f"\nanswer (auto): {rows[1][2]}")
    print(f"answer (keras): {rows[2][2]}")
    print(f"fast path {keras / fast:.1f}x quicker than the Keras path to the same answer")
    print(f"target face crop <= 1.0 s: {'met' if fast <= 1.0 else 'NOT met'} ({fast:.3f} s)")
    if args.portrait:
        portrait, portrait_keras = (statistics.median(row[1]) for row in rows[3:5])
        print(f"answer (portrait, auto): {rows[3][2]}")
        print(f"answer (portrait, keras): {rows[4][2]}")
        print(f"portrait: fast path {portrait_keras / portrait:.1f}x quicker than the Keras path")
        verdict = "met" if portrait <= 2.0 else "NOT met"
        print(f"target portrait <= 2.0 s: {verdict} ({portrait:.3f} s)")
    else:
        print("portrait with detection: not measured (pass --portrait IMAGE)")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average at the end (1, 5, 15 min): {load}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
