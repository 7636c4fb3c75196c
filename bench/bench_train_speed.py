"""Training speed: the toolkit's training path against a seed-style loop, same images, one run.

    python bench/bench_train_speed.py                     # cnn7 150x150, 250 + 250 faces_utk
    python bench/bench_train_speed.py --per-class 250 --epochs 3

toolkit: TensorFlow as the commands set it up (oneDNN kernels on, gender.console.quiet);
    every image decoded once with OpenCV (threads) into one uint8 array, then batches from
    gender.data.make_dataset (tf.data, prefetching) into model.fit, as gender_train.py does.
seed:    stock TensorFlow (TF_ENABLE_ONEDNN_OPTS left to TensorFlow's own default for this CPU);
    every epoch, each image opened with PIL (keras.utils.load_img, resized on loading), stacked
    into numpy batches and fed to model.train_on_batch, as the seed scripts did.
Each path runs in its own process (the TensorFlow setting is fixed when TensorFlow loads). Both
train the same freshly built cnn7 (same seed, Adam, binary cross-entropy, no augmentation); the
two take turns epoch by epoch (other jobs then slow both alike), and epoch 1 (graph tracing) is
left out of the rates. The fraction of the machine's FLOP rate is the
model's training FLOPs (3 x the forward pass, counted from the conv and dense layers) times
images/s, over the rate of a large float32 matrix product measured in the same run (per wall
second and per CPU second: the second is the one other jobs on the machine disturb less).
"""

import argparse
import json
import os
import statistics
import subprocess
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


def matmul_flop_rate(n: int = 2048, seconds: float = 3.0) -> tuple[float, float]:
    """FLOP per wall second and per CPU second of float32 (n x n) @ (n x n) in TensorFlow."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()  # warm-up
    count, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        tf.linalg.matmul(a, b).numpy()
        count += 1
    flops = count * 2 * n**3
    return flops / (time.perf_counter() - wall), flops / (time.process_time() - cpu)


def new_model(size, seed: int):
    import keras

    from gender.models import create_model

    keras.utils.set_random_seed(seed)
    model = create_model("cnn7", image_size=size)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"]
    )
    return model


class ToolkitPath:
    """Decode once (OpenCV threads), then tf.data batches into fit(), as gender_train.py does."""

    def __init__(self, samples, size, batch_size: int, seed: int):
        from gender.data import decode_images, make_dataset

        start = time.perf_counter()
        images, kept = decode_images(samples, size)
        self.decode_seconds = time.perf_counter() - start
        self.model = new_model(size, seed)
        self.dataset = make_dataset(images, kept.labels, batch_size, shuffle=True, seed=seed)
        self.epoch = 0

    def run_epoch(self):
        self.model.fit(
            self.dataset, epochs=self.epoch + 1, initial_epoch=self.epoch, shuffle=False, verbose=0
        )
        self.epoch += 1


class SeedPath:
    """The seeds' way: PIL decode + resize of every image in every epoch, train_on_batch."""

    def __init__(self, paths, labels, size, batch_size: int, seed: int):
        import numpy as np

        self.paths, self.size, self.batch_size = paths, size, batch_size
        self.labels = np.asarray(labels, np.float32)
        self.model = new_model(size, seed)
        self.rng = np.random.default_rng(seed)
        self.decode_seconds = None

    def run_epoch(self):
        import keras
        import numpy as np

        order = self.rng.permutation(len(self.paths))
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            batch = np.stack(
                [
                    keras.utils.img_to_array(
                        keras.utils.load_img(self.paths[i], target_size=self.size)
                    )
                    for i in index
                ]
            )
            self.model.train_on_batch(batch, self.labels[index])


REPLY = "@@ "  # marks a worker's reply lines (TensorFlow may print to stdout too)


def worker(args) -> int:
    """One path in its own process: answers "epoch" and "matmul" lines on stdin, JSON on stdout."""
    size = (args.image_size, args.image_size)
    if args.worker == "seed":
        # Stock TensorFlow: load it before anything from the toolkit can set its options.
        import tensorflow as tf  # noqa: F401

        # The seed loop lists its folder the plain way: sorted files of man/ and woman/.
        folder = Path(args.data)
        paths, labels = [], []
        for label, name in enumerate(("man", "woman")):
            files = sorted(p for p in (folder / name).iterdir() if p.is_file())
            paths += [str(p) for p in files]
            labels += [label] * len(files)
        path = SeedPath(paths, labels, size, args.batch_size, args.seed)
    else:
        from gender.console import quiet

        quiet()  # the toolkit's TensorFlow set-up, as gender_train.py gets it
        from gender.data import list_folder

        path = ToolkitPath(list_folder(Path(args.data)), size, args.batch_size, args.seed)
    from tensorflow.python.util import _pywrap_util_port

    def reply(**fields):
        print(REPLY + json.dumps(fields), flush=True)

    reply(
        onednn=bool(_pywrap_util_port.IsMklEnabled()),
        decode_seconds=path.decode_seconds,
        train_flops=3 * forward_flops(new_model(size, args.seed)),
    )
    for line in sys.stdin:
        if line.strip() == "epoch":
            wall, cpu = time.perf_counter(), time.process_time()
            path.run_epoch()
            reply(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)
        elif line.strip() == "matmul":
            wall_rate, cpu_rate = matmul_flop_rate()
            reply(wall=wall_rate, cpu=cpu_rate)
    return 0


class Worker:
    """A path's process, asked one thing at a time."""

    def __init__(self, name: str, args, data: Path):
        env = dict(os.environ)
        if name == "seed":
            env.pop("TF_ENABLE_ONEDNN_OPTS", None)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        command = [sys.executable, __file__, "--worker", name, "--data", str(data)]
        command += ["--batch-size", str(args.batch_size), "--image-size", str(args.image_size)]
        command += ["--seed", str(args.seed)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.ready = self._reply()

    def ask(self, request: str) -> dict:
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        return self._reply()

    def _reply(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY) :])
        raise SystemExit(f"error: the bench worker stopped (exit {self.process.wait()})")

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FACES_UTK), help="a man/woman folder")
    parser.add_argument("--per-class", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=3, help="per path (the first is left out)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--worker", choices=("toolkit", "seed"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is left out)")

    print(describe())
    size = args.image_size
    with tempfile.TemporaryDirectory() as tmp:
        sample = link_sample(Path(args.data), Path(tmp) / "sample", args.per_class)
        n = sum(1 for p in sample.rglob("*") if p.is_file())
        print(
            f"cnn7 at {size}x{size}, {n} images of {args.data}, batch {args.batch_size}, "
            f"{args.epochs} epochs per path, each path in its own process\n"
        )
        workers = {name: Worker(name, args, sample) for name in ("toolkit", "seed")}
        # The machine's rate: the better of each process's matmul, before and after training.
        rates = [w.ask("matmul") for w in workers.values()]
        timings = {name: [] for name in workers}
        for _ in range(args.epochs):
            for name, w in workers.items():
                reply = w.ask("epoch")
                timings[name].append((reply["wall"], reply["cpu"]))
        rates += [w.ask("matmul") for w in workers.values()]
        for w in workers.values():
            w.close()
    flop_rate, flop_rate_cpu = max(r["wall"] for r in rates), max(r["cpu"] for r in rates)
    train_flops = workers["toolkit"].ready["train_flops"]

    cores = os.cpu_count() or 1
    speed = {}
    print(
        f"{'path':8} {'oneDNN':>6} {'epoch s':>8} {'images/s':>9} {'per CPU-s':>10} "
        f"{'FLOP rate used':>15} {'per CPU-s':>10}"
    )
    for name, rows in timings.items():
        wall = statistics.median(w for w, _ in rows[1:])
        cpu = statistics.median(c for _, c in rows[1:])
        speed[name] = (n / wall, n / cpu)
        used, used_cpu = train_flops * n / wall / flop_rate, train_flops * n / cpu / flop_rate_cpu
        onednn = "on" if workers[name].ready["onednn"] else "off"
        print(
            f"{name:8} {onednn:>6} {wall:8.2f} {n / wall:9.1f} {n / cpu:10.1f} "
            f"{used:15.1%} {used_cpu:10.1%}"
        )
    decode = workers["toolkit"].ready["decode_seconds"]
    print(
        f"\n(first epochs, left out: toolkit {timings['toolkit'][0][0]:.1f} s, "
        f"seed {timings['seed'][0][0]:.1f} s; the toolkit decoded all {n} images once before, "
        f"in {decode:.2f} s = {n / decode:.0f} images/s)"
    )
    print(
        f"cnn7 training cost: {train_flops / 1e9:.3f} GFLOP per image (3 x forward); "
        f"float32 matmul: {flop_rate / 1e9:.1f} GFLOP/s wall on {cores} cores, "
        f"{flop_rate_cpu / 1e9:.1f} GFLOP per CPU second (best of both processes)"
    )
    ratio = speed["toolkit"][0] / speed["seed"][0]
    print(
        f"toolkit / seed images/s: {ratio:.2f}x wall clock, "
        f"{speed['toolkit'][1] / speed['seed'][1]:.2f}x per CPU second"
    )
    print(f"target >= 3x: {'met' if ratio >= 3 else 'NOT met'} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
