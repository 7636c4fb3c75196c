"""Scaling out: images/s for 1 and 2 workers on loopback, and peak memory streaming packed shards.

    python bench/bench_scale.py                       # both parts (~10-20 min on 2 busy cores)
    python bench/bench_scale.py --part speed --images 1024
    python bench/bench_scale.py --part memory --budget-mb 20 --factor 10

speed: cnn3 trains on faces_utk images three ways, each in its own process(es): model.fit on
one device; the custom step (MirroredStrategy on cpu:0); two MultiWorkerMirroredStrategy workers
on 127.0.0.1, which share this machine's cores, so no speed-up is expected. images/s is the
training set over the second epoch's time (the first includes tracing). The all-reduce overhead
is timed directly: two workers all-reduce tensors of cnn3's trainable shapes, as each step does.

memory: peak RSS (the child's own ru_maxrss) of 1-epoch cnn3 runs with GENDER_MEMORY_BUDGET_MB
set to --budget-mb: in-memory training on images whose decoded arrays fill the budget (1x), and
streaming packed shards of 1x and --factor x the budget in file bytes (faces_utk repeated).
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import FACES_UTK, ROOT, describe

sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("speed", "memory", "both"), default="both")
    parser.add_argument("--data", default=str(FACES_UTK))
    parser.add_argument("--images", type=int, default=1024, help="speed: training images")
    parser.add_argument("--image-size", type=int, default=64, help="speed (memory uses 32)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch")
    parser.add_argument("--budget-mb", type=int, default=20)
    parser.add_argument("--factor", type=int, default=10, help="memory: shards x the budget")
    parser.add_argument("--allreduce-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.allreduce_worker is not None:
        return allreduce_worker(args)
    print(describe())
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp = Path(tmp)
        if args.part in ("speed", "both"):
            speed(args, tmp)
        if args.part in ("memory", "both"):
            memory(args, tmp)
    return 0


# --- data ---------------------------------------------------------------------------------------


def image_subset(source, out: Path, count: int, repeat: int = 1) -> Path:
    """out/{man,woman}: hard links to `count` images of `source` (balanced), each `repeat` times."""
    from gender.data import load_samples

    samples = next(iter(load_samples(source).values()))
    per_class = count // 2
    for label, name in enumerate(("man", "woman")):
        (out / name).mkdir(parents=True, exist_ok=True)
        paths = [p for p, y in zip(samples.paths, samples.labels) if y == label][:per_class]
        for copy in range(repeat):
            for path in paths:
                target = out / name / f"r{copy}_{Path(path).name}"
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copyfile(path, target)
    return out


def run(command, env=None, log=None) -> tuple[int, float, float]:
    """Run a child; (return code, seconds, its own peak RSS in MB)."""
    start = time.perf_counter()
    with open(log or os.devnull, "w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


def run_pair(command, logs) -> list[int]:
    from gender.distribute import local_cluster

    procs = []
    for env, log in zip(local_cluster(2), logs):
        out = open(log, "w")  # noqa: SIM115
        procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out))
    return [p.wait() for p in procs]


def epoch_seconds(out: Path) -> list[float]:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    with open(run_dir / "history.csv", newline="") as f:
        return [float(row["seconds"]) for row in csv.DictReader(f)]


# --- speed --------------------------------------------------------------------------------------


def speed(args, tmp: Path) -> None:
    data = image_subset(args.data, tmp / "speed_data", args.images)
    train = [
        sys.executable, str(ROOT / "gender_train.py"), "--data", str(data), "--model", "cnn3",
        "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
        "--epochs", "2", "--val-split", "0.2", "--augment", "none",
    ]  # fmt: skip
    n_train = args.images - int(0.2 * args.images)
    steps = -(-n_train // args.batch_size)
    print(
        f"\nspeed: cnn3 {args.image_size}x{args.image_size}, ~{n_train} training images, "
        f"global batch {args.batch_size} ({steps} steps an epoch), second epoch timed"
    )
    rows = []
    for name, extra in (
        ("model.fit, 1 process", []),
        ("custom step, 1 process", ["--devices", "cpu:0"]),
    ):
        out = tmp / name.replace(" ", "_").replace(",", "")
        code, _, _ = run([*train, *extra, "--out", str(out)], log=tmp / "speed.log")
        if code:
            raise SystemExit(f"{name} failed:\n" + (tmp / "speed.log").read_text()[-2000:])
        rows.append((name, epoch_seconds(out)[-1]))
    out = tmp / "pair"
    codes = run_pair([*train, "--out", str(out)], [tmp / "w0.log", tmp / "w1.log"])
    if any(codes):
        raise SystemExit("two workers failed:\n" + (tmp / "w0.log").read_text()[-2000:])
    rows.append(("2 workers (MWMS), loopback", epoch_seconds(out)[-1]))
    for name, seconds in rows:
        print(
            f"  {name:28s} {n_train / seconds:7.0f} images/s  ({seconds:.2f} s an epoch, "
            f"{1000 * seconds / steps:.0f} ms a step)"
        )
    single = dict(rows)["custom step, 1 process"]
    pair = dict(rows)["2 workers (MWMS), loopback"]
    print(f"  2 workers / 1: {single / pair:.2f}x the images/s (they share the same cores)")
    print(f"  step time, 2 workers minus 1: {1000 * (pair - single) / steps:+.0f} ms")

    codes = run_pair(
        [sys.executable, __file__, "--allreduce-worker", "0", "--image-size", str(args.image_size)],
        [tmp / "a0.log", tmp / "a1.log"],
    )
    if any(codes):
        raise SystemExit("all-reduce workers failed:\n" + (tmp / "a0.log").read_text()[-2000:])
    lines = [line for line in (tmp / "a0.log").read_text().splitlines() if "all-reduce" in line]
    print(f"  {lines[-1].strip()}")


def allreduce_worker(args) -> int:
    """One of two processes: all-reduce tensors of cnn3's trainable shapes, timed."""
    import statistics

    from gender.console import quiet

    quiet()  # before TensorFlow loads, as in gender_train.py
    import tensorflow as tf

    from gender import distribute

    strategy = distribute.select_strategy()
    import gender.models as models

    with strategy.scope():
        model = models.create_model("cnn3", image_size=(args.image_size, args.image_size))
    shapes = [v.shape for v in model.trainable_variables]
    grads = [tf.ones(s) for s in shapes]
    size = sum(int(tf.size(g)) for g in grads)

    @tf.function
    def reduce():
        def step():
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.SUM, grads)

        return strategy.run(step)

    for _ in range(5):
        reduce()
    times = []
    for _ in range(40):
        start = time.perf_counter()
        out = reduce()
        float(tf.reduce_sum(strategy.experimental_local_results(out)[0][0]))
        times.append(time.perf_counter() - start)
    print(
        f"all-reduce of cnn3's gradients ({len(shapes)} tensors, {size:,} floats, "
        f"{size * 4 / 2**20:.2f} MB) over 2 workers: median {1000 * statistics.median(times):.1f} "
        f"ms, min {1000 * min(times):.1f} ms (40 calls)",
        flush=True,
    )
    return 0


# --- memory -------------------------------------------------------------------------------------


def memory(args, tmp: Path) -> None:
    import numpy as np

    from gender.data import load_samples
    from gender.shards import pack

    budget = args.budget_mb * 2**20
    env = dict(os.environ, GENDER_MEMORY_BUDGET_MB=str(args.budget_mb))
    size = 32
    # in memory at 1x: train + val decoded arrays (32x32x3 bytes an image) fill the budget
    count = budget // (size * size * 3)
    in_memory = image_subset(args.data, tmp / "mem_data", count)
    samples = next(iter(load_samples(args.data).values()))
    mean_bytes = sum(os.path.getsize(p) for p in samples.paths) / len(samples)
    train = [
        sys.executable, str(ROOT / "gender_train.py"), "--model", "cnn3", "--image-size",
        str(size), "--batch-size", str(args.batch_size), "--epochs", "1", "--augment", "flip",
    ]  # fmt: skip
    print(
        f"\nmemory: cnn3 {size}x{size}, 1 epoch, GENDER_MEMORY_BUDGET_MB={args.budget_mb}; "
        f"peak RSS of each training process"
    )
    code, seconds, peak = run(
        [*train, "--data", str(in_memory), "--out", str(tmp / "mem_runs")], env, tmp / "m.log"
    )
    if code:
        raise SystemExit("in-memory run failed:\n" + (tmp / "m.log").read_text()[-2000:])
    print(
        f"  in memory, {count} images (decoded arrays = 1x budget): {peak:.0f} MB ({seconds:.0f} s)"
    )
    for factor in (1, args.factor):
        # faces_utk repeated until the files add up to factor x the budget
        needed = round(factor * budget / mean_bytes)
        index = np.random.default_rng(factor).permutation(needed) % len(samples)
        cut = int(needed * 0.9)
        shards = tmp / f"shards_{factor}x"
        started = time.perf_counter()
        manifest = pack(
            {"train": samples.subset(index[:cut]), "val": samples.subset(index[cut:])}, shards
        )
        pack_seconds = time.perf_counter() - started
        on_disk = sum(f.stat().st_size for f in shards.glob("*.tfrecord")) / 2**20
        code, seconds, peak = run(
            [*train, "--data", str(shards), "--out", str(tmp / f"runs_{factor}")],
            env,
            tmp / "s.log",
        )
        if code:
            raise SystemExit("streamed run failed:\n" + (tmp / "s.log").read_text()[-2000:])
        total = sum(entry["count"] for entry in manifest["splits"].values())
        print(
            f"  streamed, {on_disk:.0f} MB of shards ({on_disk / args.budget_mb:.1f}x budget, "
            f"{total} images): {peak:.0f} MB ({seconds:.0f} s; packing took {pack_seconds:.0f} s)"
        )
        shutil.rmtree(shards)


if __name__ == "__main__":
    sys.exit(main())
