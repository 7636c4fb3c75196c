"""Candidate architectures for the bundled models: file size and CPU images/s, one run.

    python bench/bench_candidates.py                    # the default candidates
    python bench/bench_candidates.py --candidates cnn7@150x150 mobilenetv2@128x128 --images 256

Speed only: each candidate is built with random weights (the speed of a network does not depend
on its weights) and timed through `model.predict` (Keras, all cores) and through the LiteRT
interpreter of its TFLite export, on the same random uint8 images. The size is that of the saved
`.keras` file without optimizer state (what `gender_train.py bundle` commits; a committed model
stays under 20 MB). Accuracy needs training: docs/benchmarks.md has the runs behind it.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from machine import ROOT, describe

sys.path.insert(0, str(ROOT))

DEFAULT_CANDIDATES = (
    "cnn7@150x150",
    "cnn7se@150x150",
    "mobilenetv2@96x96",
    "mobilenetv2@128x128",
    "mobilenetv2@160x160",
    "mobilenetv2@224x96",
    "vgg16@128x128",
    "resnet50@128x128",
    "resnet101@128x128",
    "resnet152@128x128",
)


def parse_candidate(text: str) -> tuple[str, tuple[int, int]]:
    name, _, size = text.partition("@")
    height, _, width = size.partition("x")
    return name, (int(height), int(width or height))


def images_per_second(run, batch, repeats: int) -> float:
    run(batch)  # warm-up: graph tracing, XNNPACK set-up
    start = time.perf_counter()
    for _ in range(repeats):
        run(batch)
    return repeats * len(batch) / (time.perf_counter() - start)


def main(argv=None) -> int:
    from gender.console import quiet

    quiet()  # the commands' environment (gender.cli sets it there): a bench times what users run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", default=list(DEFAULT_CANDIDATES))
    parser.add_argument("--images", type=int, default=128, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    print(describe())

    import numpy as np

    from gender.export import export_tflite
    from gender.lite import LiteModel
    from gender.models import create_model

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.candidates:
            name, size = parse_candidate(text)
            model = create_model(name, size, backbone_weights=None)
            keras_file = Path(tmp) / f"{name}_{size[0]}x{size[1]}.keras"
            model.save(keras_file)
            batch = rng.integers(0, 256, (args.images, *size, 3), dtype=np.uint8)
            keras_rate = images_per_second(
                lambda x, model=model: model.predict(x, batch_size=64, verbose=0),
                batch,
                args.repeats,
            )
            tflite_file = export_tflite(model, keras_file.with_suffix(".tflite"))
            lite = LiteModel(tflite_file, {"image_size": list(size)})
            lite_rate = images_per_second(lite.predict, batch, args.repeats)
            rows.append((text, keras_file.stat().st_size / 2**20, keras_rate, lite_rate))
            megabytes = rows[-1][1]
            print(f"{text}: {megabytes:.1f} MB, Keras {keras_rate:.0f}/s, LiteRT {lite_rate:.0f}/s")

    print("\ncandidate             .keras MB   Keras img/s   LiteRT img/s")
    for text, megabytes, keras_rate, lite_rate in rows:
        print(f"{text:<22}{megabytes:>9.1f}{keras_rate:>14.0f}{lite_rate:>15.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
