"""Folder throughput: images/s of `gender_mAP.py` end to end on 200x200 JPEG face crops.

    python bench/bench_folder.py                          # 1000 + 1000 faces_utk crops
    python bench/bench_folder.py --per-class 250 --weights weights/<run>/best.keras

End to end = listing, decoding, resizing, the model and the report, timed around
gender_mAP.main() in this process (the imports are done once before; the one-off start-up of a
fresh process is what bench_cold_start.py measures). The parts are also timed alone: decoding
(threads over both cores) and the model on decoded arrays. The Keras path runs on a quarter of
the images for the ratio. Target: at least 400 images/s end to end with the bundled face model.
"""

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

from machine import FACES_UTK, ROOT, describe, face_weights, link_sample

sys.path.insert(0, str(ROOT))


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of fn(*args)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def run_map(argv) -> None:
    """One gender_mAP.main(argv) call; its report is swallowed."""
    import gender_mAP

    with contextlib.redirect_stdout(io.StringIO()):
        status = gender_mAP.main(argv)
    if status != 0:
        raise SystemExit(f"gender_mAP.py {' '.join(argv)} failed ({status})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FACES_UTK), help="a man/woman folder")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--weights", help="default: weights/pretrained/face.keras")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "lite", "int8"),
        help="the fast path measured against Keras (default auto: what a user gets)",
    )
    args = parser.parse_args(argv)

    print(describe())
    weights = face_weights(args.weights)
    import gender_mAP  # noqa: F401  imported before timing: a folder run pays it once
    from gender.data import decode_images, list_folder
    from gender.predictor import Predictor

    with tempfile.TemporaryDirectory() as tmp:
        folder = link_sample(Path(args.data), Path(tmp) / "all", args.per_class)
        small = link_sample(Path(args.data), Path(tmp) / "quarter", max(1, args.per_class // 4))
        samples = list_folder(folder)
        n, n_small = len(samples), len(list_folder(small))
        predictor = Predictor.load(weights, backend=args.backend)
        info, size, backend = predictor.info, predictor.size, predictor.backend
        print(
            f"model: {weights} ({info.model}, {size[0]}x{size[1]}, backend {backend}); "
            f"{n} images of {args.data}"
        )

        rows = []
        wall, cpu = time.perf_counter(), time.process_time()
        images, _ = decode_images(samples, size)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append(("decode + resize only (OpenCV, thread pool)", n, wall, cpu))
        predictor.classify(images[: args.batch_size], args.batch_size)  # warm-up
        wall, cpu = timed(predictor.classify, images, args.batch_size)
        rows.append((f"model only, LiteRT {backend} (XNNPACK)", n, wall, cpu))
        del images

        common = ["--batch-size", str(args.batch_size)]
        fast = ["--backend", backend, *common]
        run_map([str(small), str(weights), *fast])  # warm file caches
        wall, cpu = timed(run_map, [str(folder), str(weights), *fast])
        rows.append((f"gender_mAP.py end to end, LiteRT {backend} ({n} images)", n, wall, cpu))
        wall, cpu = timed(run_map, [str(small), str(weights), "--backend", "keras", *common])
        rows.append((f"gender_mAP.py end to end, Keras ({n_small} images)", n_small, wall, cpu))

    cores = os.cpu_count() or 1
    print(f"\n{'what':50} {'images/s':>9} {'per CPU-s':>10} {f'x {cores} cores':>10}")
    for name, count, wall, cpu in rows:
        print(f"{name:50} {count / wall:9.0f} {count / cpu:10.0f} {cores * count / cpu:10.0f}")
    print(
        "(images/s: wall clock, the figure the target is about; per CPU-s: images per second of "
        f"CPU this process got, all threads; x {cores} cores: the rate if it had every core "
        "to itself and used them all, an upper bound for an idle machine)"
    )
    lite_rate = rows[2][1] / rows[2][2]
    keras_rate = rows[3][1] / rows[3][2]
    print(f"\nLiteRT path {lite_rate / keras_rate:.1f}x the Keras path end to end (wall)")
    verdict = "met" if lite_rate >= 400 else "NOT met"
    print(f"target >= 400 images/s end to end: {verdict} ({lite_rate:.0f} images/s wall)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
