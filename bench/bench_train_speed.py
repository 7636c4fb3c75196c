"""Training speed: the toolkit's input path against a seed-style loop, same images, one run.

    python bench/bench_train_speed.py                     # cnn7 150x150, 250 + 250 faces_utk
    python bench/bench_train_speed.py --per-class 250 --epochs 3

toolkit: every image decoded once with OpenCV (threads) into one uint8 array, then batches from
    gender.data.make_dataset (tf.data, prefetching) into model.fit, as gender_train.py does.
seed:    every epoch, each image opened with PIL (keras.utils.load_img, resized on loading),
    stacked into numpy batches and fed to model.train_on_batch, as the seed scripts did.
Both train the same freshly built cnn7 (same seed, Adam, binary cross-entropy, no augmentation);
epoch 1 (graph tracing) is left out of the rates. The fraction of the machine's FLOP rate is the
model's training FLOPs (3 x the forward pass, counted from the conv and dense layers) times
images/s, over the rate of a large float32 matrix product measured in the same run.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import FACES_UTK, ROOT, describe, link_sample

sys.path.insert(0, str(ROOT))


def forward_flops(model) -> int:
    """Multiply-adds x 2 of one image's forward pass through the conv and dense layers."""
    import keras

    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, out_channels = layer.output.shape
            kh, kw = layer.kernel_size
            flops += 2 * height * width * out_channels * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * layer.input.shape[-1] * layer.units
    return flops


def matmul_flop_rate(n: int = 2048, seconds: float = 3.0) -> float:
    """FLOP/s of float32 (n x n) @ (n x n) products in TensorFlow, all cores."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        tf.linalg.matmul(a, b).numpy()
        count += 1
    return count * 2 * n**3 / (time.perf_counter() - start)


class EpochTimer:
    """Wall and CPU seconds of each epoch (a Keras callback, or called by hand)."""

    def __init__(self):
        self.rows = []

    def begin(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def end(self):
        self.rows.append((time.perf_counter() - self._wall, time.process_time() - self._cpu))


def new_model(size, seed: int):
    import keras

    from models import create_model

    keras.utils.set_random_seed(seed)
    model = create_model("cnn7", image_size=size)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"]
    )
    return model


def toolkit_epochs(samples, size, epochs: int, batch_size: int, seed: int):
    """Decode once, then tf.data batches into fit(); (decode seconds, per-epoch timings)."""
    import keras

    from gender.data import decode_images, make_dataset

    start = time.perf_counter()
    images, kept = decode_images(samples, size)
    decode_seconds = time.perf_counter() - start
    model = new_model(size, seed)
    timer = EpochTimer()
    callback = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda *_: timer.begin(), on_epoch_end=lambda *_: timer.end()
    )
    dataset = make_dataset(images, kept.labels, batch_size, shuffle=True, seed=seed)
    model.fit(dataset, epochs=epochs, callbacks=[callback], shuffle=False, verbose=0)
    return decode_seconds, timer.rows


def seed_epochs(samples, size, epochs: int, batch_size: int, seed: int):
    """The seeds' way: PIL decode + resize of every image in every epoch, train_on_batch."""
    import keras
    import numpy as np

    model = new_model(size, seed)
    rng = np.random.default_rng(seed)
    labels = samples.labels.astype(np.float32)
    timer = EpochTimer()
    for _ in range(epochs):
        timer.begin()
        order = rng.permutation(len(samples))
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = np.stack(
                [
                    keras.utils.img_to_array(
                        keras.utils.load_img(samples.paths[i], target_size=size)
                    )
                    for i in index
                ]
            )
            model.train_on_batch(batch, labels[index])
        timer.end()
    return timer.rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FACES_UTK), help="a man/woman folder")
    parser.add_argument("--per-class", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=3, help="per path (the first is left out)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is left out)")

    print(describe())
    import gender  # noqa: F401  sets the Keras backend and quiets TensorFlow's start-up
    from gender.data import list_folder

    size = (args.image_size, args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        samples = list_folder(link_sample(Path(args.data), Path(tmp) / "sample", args.per_class))
        n = len(samples)
        print(
            f"cnn7 at {size[0]}x{size[1]}, {n} images of {args.data}, batch {args.batch_size}, "
            f"{args.epochs} epochs per path\n"
        )
        flop_rate = matmul_flop_rate()
        run = (samples, size, args.epochs, args.batch_size, args.seed)
        decode_seconds, toolkit = toolkit_epochs(*run)
        seed = seed_epochs(*run)
        flop_rate = max(flop_rate, matmul_flop_rate())  # before and after: the better of two

    train_flops = 3 * forward_flops(new_model(size, args.seed))
    cores = os.cpu_count() or 1
    rates = {}
    print(f"{'path':10} {'epoch s':>8} {'images/s':>9} {'per CPU-s':>10} {'of FLOP rate':>13}")
    for name, rows in (("toolkit", toolkit), ("seed", seed)):
        wall = statistics.median(w for w, _ in rows[1:])
        cpu = statistics.median(c for _, c in rows[1:])
        rates[name] = (n / wall, n / cpu)
        fraction = train_flops * n / wall / flop_rate
        print(f"{name:10} {wall:8.2f} {n / wall:9.1f} {n / cpu:10.1f} {fraction:12.1%}")
    print(
        f"\ntoolkit: decoding all {n} images once took {decode_seconds:.2f} s "
        f"({n / decode_seconds:.0f} images/s); its first epoch (tracing) {toolkit[0][0]:.1f} s, "
        f"the seed loop's {seed[0][0]:.1f} s"
    )
    print(
        f"cnn7 training cost: {train_flops / 1e9:.3f} GFLOP per image (3 x forward); "
        f"float32 matmul rate {flop_rate / 1e9:.1f} GFLOP/s on {cores} cores"
    )
    ratio = rates["toolkit"][0] / rates["seed"][0]
    print(
        f"toolkit / seed images/s: {ratio:.2f}x wall clock, "
        f"{rates['toolkit'][1] / rates['seed'][1]:.2f}x per CPU second"
    )
    print(f"target >= 3x: {'met' if ratio >= 3 else 'NOT met'} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
