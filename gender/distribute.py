"""Training past one device with tf.distribute: strategy choice, chief-only files, the custom step.

Which strategy (select_strategy, called before any other TensorFlow op):
    TF_CONFIG names a cluster of 2+ tasks  -> MultiWorkerMirroredStrategy (one process per machine)
    --devices gpu:0,gpu:1 (or auto: 2+ GPUs) -> MirroredStrategy on this machine
    otherwise                              -> none: the default device and model.fit
Under a strategy, `model.fit` does not work with Keras 3 (PerReplica values reach a tensor
conversion at the first step; docs/scaling.md, "Why a custom step", has the measurement), so
fit_phase trains the same Keras model with a custom step: strategy.run on each replica's batch,
per-example loss averaged over the global batch with tf.nn.compute_average_loss, tape.gradient,
optimizer.apply_gradients (Keras all-reduces the gradients), strategy.reduce for the logs. The
callbacks (RunRecorder, EarlyStopping, ReduceLROnPlateau) are driven by hand with the same logs
on every worker, so every worker takes the same decisions.

--batch-size stays the global batch: each of R replicas gets batch/R images a step, so a run on
2 workers takes the same steps, on the same images, as a run on one.

Only the chief writes the run folder. The other workers write theirs to a temporary folder and
delete it at the end (TensorFlow's multi-worker guide does the same): saving may read variables
through collectives, so every worker must save when the chief does.
"""

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gender import UserError
from gender.console import command
from gender.data import make_dataset
from gender.interrupt import native_wait
from gender.models import compile_model
from gender.runs import new_run_dir
from gender.shards import stream_dataset

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from gender.shards import PackedSplit


# the task types this toolkit trains with (MultiWorkerMirroredStrategy); TensorFlow's parameter
# servers ('ps') and side evaluators need a different strategy and training loop
TASK_TYPES = ("chief", "worker")
# how long a worker waits for the others to start by default (--peer-timeout)
PEER_TIMEOUT = 300.0


def tf_config() -> dict:
    """The parsed TF_CONFIG environment variable ({} when unset), checked field by field.

    Raises:
        UserError: one line naming the field that is wrong (TensorFlow's own errors are
            tracebacks, and an index out of range is silently trained alone).
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"TF_CONFIG is not valid JSON ({err})") from None
    _check_tf_config(config)
    return config


def _check_tf_config(config) -> None:
    def bad(field: str, problem: str) -> UserError:
        name = f"TF_CONFIG {field}" if field else "TF_CONFIG"
        return UserError(f"{name}: {problem} (docs/scaling.md)")

    if not isinstance(config, dict):
        raise bad("", f"expected a JSON object with 'cluster' and 'task', got {config!r:.40}")
    cluster = config.get("cluster", {})
    if not isinstance(cluster, dict):
        raise bad("cluster", 'expected an object such as {"worker": ["host:port", ...]}')
    for kind, addresses in cluster.items():
        if kind not in TASK_TYPES:
            raise bad(f"cluster.{kind}", f"task type not supported here (only {TASK_TYPES})")
        if not isinstance(addresses, list) or not all(
            isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses
        ):
            got = f"got {addresses!r:.60}"
            raise bad(f"cluster.{kind}", f'expected a list of "host:port" strings, {got}')
    task = config.get("task", {})
    if not isinstance(task, dict):
        raise bad("task", 'expected an object such as {"type": "worker", "index": 0}')
    if not task:
        if sum(len(addresses) for addresses in cluster.values()) > 1:
            example = '{"type": "worker", "index": 0}'
            raise bad("task", f"missing: which task of the cluster this process is, {example}")
        return
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in TASK_TYPES:
        raise bad("task.type", f"{kind!r}: not supported here (only {TASK_TYPES})")
    if kind not in cluster:
        raise bad("task.type", f"{kind!r}: the cluster names no {kind} addresses")
    if isinstance(index, bool) or not isinstance(index, int):
        raise bad("task.index", f"{index!r}: expected a whole number")
    if not 0 <= index < len(cluster[kind]):
        raise bad(
            "task.index",
            f"{index}: out of range; cluster.{kind} has {len(cluster[kind])} address(es), "
            f"so 0 to {len(cluster[kind]) - 1}",
        )


def local_cluster(count: int) -> list[dict]:
    """Environments (os.environ plus TF_CONFIG) for `count` workers on this machine, on free
    loopback ports: multi-worker training tried on one machine (tests, bench/bench_scale.py)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    workers = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    task = {"cluster": {"worker": workers}}
    return [
        {**os.environ, "TF_CONFIG": json.dumps({**task, "task": {"type": "worker", "index": i}})}
        for i in range(count)
    ]


def cluster_size() -> int:
    """The number of tasks TF_CONFIG names (0 when unset)."""
    return sum(len(tasks) for tasks in tf_config().get("cluster", {}).values())


def is_chief() -> bool:
    """Whether this process writes the run folder: the 'chief' task, else worker 0, else alone."""
    config = tf_config()
    task = config.get("task", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return (
        task.get("type") == "worker"
        and task.get("index", 0) == 0
        and ("chief" not in config.get("cluster", {}))
    )


def task_index() -> int:
    """This worker's number in TF_CONFIG (0 when unset): varies augmentation seeds per worker."""
    task = tf_config().get("task", {})
    return int(task.get("index", 0)) + (1000 if task.get("type") == "chief" else 0)


def select_strategy(
    devices: str | None = None, peer_timeout: float = PEER_TIMEOUT
) -> "tf.distribute.Strategy | None":
    """The tf.distribute strategy for this process, or None for the default device (model.fit).

    Must be called before TensorFlow runs anything: MultiWorkerMirroredStrategy configures the
    collective ops of the process when it is created.

    Args:
        devices: None or 'auto' (2+ GPUs -> MirroredStrategy), 'default' (never mirror), or a
            comma list of devices such as 'gpu:0,gpu:1' ('cpu:0' alone runs the custom step on
            one device, for checking it).
        peer_timeout: seconds to wait for the other workers of a TF_CONFIG cluster to start
            (`wait_for_peers`).
    """
    import tensorflow as tf

    if cluster_size() > 1:
        wait_for_peers(peer_timeout)
        with native_wait():  # TensorFlow's rendezvous blocks in C++, holding Python's lock
            return tf.distribute.MultiWorkerMirroredStrategy()
    if devices in (None, "auto"):
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None
    if devices == "default":
        return None
    names = [d.strip().lower().split("device:")[-1].lstrip("/") for d in devices.split(",")]
    available = {d.name.lower().split("device:")[-1] for d in tf.config.list_logical_devices()}
    missing = [name for name in names if name not in available]
    if missing or not names:
        raise UserError(
            f"--devices {devices}: {', '.join(missing) or 'no device'} not found; this machine "
            f"has {', '.join(sorted(available))}"
        )
    return tf.distribute.MirroredStrategy([f"/{name}" for name in names])


def wait_for_peers(timeout: float = PEER_TIMEOUT, every: float = 10.0) -> None:
    """Wait until every other task of TF_CONFIG's cluster accepts connections, saying which
    addresses it waits for every `every` seconds, and give up after `timeout` seconds.

    TensorFlow's own rendezvous waits for ever without a word, inside C++ code that no signal
    handler can interrupt; this waits in Python first. While waiting, this task listens on its
    own address, so that its peers find it too; the listener is closed before TensorFlow's
    server takes the port.

    Raises:
        UserError: the peers still missing after `timeout`, named with their addresses.
    """
    config = tf_config()
    task = config.get("task") or {"type": "worker", "index": 0}
    peers = {
        f"{kind} {i}": address
        for kind, addresses in config.get("cluster", {}).items()
        for i, address in enumerate(addresses)
    }
    me = f"{task['type']} {task.get('index', 0)}"
    host, _, port = peers.pop(me).rpartition(":")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(port)))  # every interface, as TensorFlow's server binds
        listener.listen(16)
        listener.settimeout(0.1)
    except OSError as err:
        listener.close()
        raise UserError(
            f"TF_CONFIG: this task's address {host}:{port} cannot be used ({err.strerror})"
        ) from None
    started, said = time.monotonic(), 0.0
    try:
        while True:
            waiting = {name: address for name, address in peers.items() if not _reachable(address)}
            _accept_all(listener)
            elapsed = time.monotonic() - started
            if not waiting:
                return
            if elapsed > timeout:
                raise UserError(
                    f"{me}: gave up after {elapsed:.0f} s (--peer-timeout {timeout:g}) waiting for "
                    + ", ".join(f"{name} at {address}" for name, address in waiting.items())
                    + "; start every task of TF_CONFIG's cluster"
                )
            if elapsed - said >= every:
                said = elapsed
                print(
                    f"{me}: waiting for "
                    + ", ".join(f"{name} at {address}" for name, address in waiting.items())
                    + f" ({elapsed:.0f} s of --peer-timeout {timeout:g})",
                    flush=True,
                )
            time.sleep(0.5)
    finally:
        # a peer's probe that arrives after this closes is refused, and it tries again
        _accept_all(listener)
        listener.close()


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _accept_all(listener) -> None:
    """Accept and close the peers' probes waiting on `listener` (the probe closes first)."""
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:  # includes the timeout: no probe waiting
            return
        connection.close()


def scope(strategy: "tf.distribute.Strategy | None") -> AbstractContextManager:
    """strategy.scope(), or a do-nothing context without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def describe(strategy: "tf.distribute.Strategy | None", batch_size: int) -> dict:
    """What run.json and the start-up lines say about the strategy."""
    if strategy is None:
        return {"strategy": "default", "replicas": 1, "workers": 1, "global_batch_size": batch_size}
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise UserError(
            f"--batch-size {batch_size} (the global batch) must be a multiple of the "
            f"{replicas} replicas"
        )
    return {
        # MultiWorkerMirroredStrategy's class is named CollectiveAllReduceStrategy
        "strategy": "MultiWorkerMirroredStrategy" if cluster_size() > 1 else "MirroredStrategy",
        "replicas": replicas,
        "workers": max(1, cluster_size()),
        "global_batch_size": batch_size,
        "per_replica_batch_size": batch_size // replicas,
    }


def run_folder(out: str | Path, model_name: str, resume: str | Path | None = None) -> Path:
    """The run folder: the chief's real one, or a temporary folder for any other worker."""
    if not is_chief():
        return Path(tempfile.mkdtemp(prefix=f"gender-worker{task_index()}-"))
    return Path(resume) if resume else new_run_dir(out, model_name)


def finish(run_dir: Path) -> bool:
    """Remove a non-chief worker's temporary folder; True on the chief (its folder stays)."""
    if is_chief():
        return True
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"worker {task_index()}: done (the chief wrote the run folder)")
    return False


@dataclass
class Feed:
    """How each worker builds its training batches (see in_memory_feed and packed_feed).

    make(input_context) -> tf.data.Dataset of per-replica batches for that input pipeline.
    steps: global steps per epoch. repeat: the dataset loops for ever (one iterator per phase).
    """

    make: Callable  # (tf.distribute.InputContext) -> tf.data.Dataset
    steps: int
    repeat: bool


def in_memory_feed(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    augment: Callable | None = None,
) -> Feed:
    """Decoded arrays, cut the way a one-device run cuts them, then split between replicas.

    Every worker holds all the images and draws the same global batches (same seed); replica r
    of R takes rows [r*b/R, (r+1)*b/R) of each, so together they train what one device would.
    """
    import tensorflow as tf

    def make(context):
        replicas, pipelines = context.num_replicas_in_sync, context.num_input_pipelines
        per_pipeline = replicas // pipelines
        first = context.input_pipeline_id * per_pipeline
        ds = make_dataset(images, labels, batch_size, shuffle=True, seed=seed)

        def piece(x, y, r):
            b = tf.shape(x)[0]
            lo, hi = (r * b) // replicas, ((r + 1) * b) // replicas
            return x[lo:hi], y[lo:hi]

        ds = ds.flat_map(
            lambda x, y: tf.data.Dataset.range(first, first + per_pipeline).map(
                lambda r: piece(x, y, tf.cast(r, tf.int32))
            )
        )
        if augment is not None:
            ds = ds.map(lambda x, y: (augment(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    return Feed(make, -(-len(labels) // batch_size), repeat=False)


def packed_feed(
    split: "PackedSplit",
    image_size: tuple[int, int],
    batch_size: int,
    seed: int,
    augment: Callable | None = None,
) -> Feed:
    """Streamed shards: each worker reads its own shard files (sharding by file), for ever.

    Workers hold different numbers of images, so an epoch is a fixed number of global steps
    (the images / the global batch) taken from a repeating stream rather than one pass.
    """

    def make(context):
        return stream_dataset(
            split,
            image_size,
            context.get_per_replica_batch_size(batch_size),
            shuffle=True,
            seed=seed + context.input_pipeline_id,
            num_pipelines=context.num_input_pipelines,
            pipeline_index=context.input_pipeline_id,
            repeat=True,
            augment=augment,
        )

    return Feed(make, -(-len(split) // batch_size), repeat=True)


def fit_phase(
    strategy: "tf.distribute.Strategy | None",
    model: "keras.Model",
    learning_rate: float,
    keep_optimizer: bool,
    feed: Feed,
    val_ds: "tf.data.Dataset | None",
    class_weight: dict[int, float] | None,
    callbacks: Sequence["keras.callbacks.Callback"],
    first_epoch: int,
    last_epoch: int,
    label_smoothing: float = 0.0,
) -> None:
    """Train epochs first_epoch+1 .. last_epoch with the custom step; validate after each.

    Args:
        strategy: a tf.distribute strategy, or None for the default one (streamed data on one
            device also trains here).
        model: built (or loaded) inside strategy.scope().
        keep_optimizer: continue with model.optimizer (a resumed run's Adam state).
        val_ds: a local tf.data set of (images, labels) batches, or None. Every worker
            evaluates all of it on its own copy of the weights: no collectives, same numbers.
        callbacks: Keras callbacks, called as model.fit would call them.
        label_smoothing: as compile_model's, for the training and the validation loss.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        if not (keep_optimizer and model.optimizer is not None):
            compile_model(model, learning_rate, label_smoothing)
        model.optimizer.build(model.trainable_variables)
    train_step, eval_step = _custom_steps(strategy, model, class_weight, label_smoothing)
    dataset = strategy.distribute_datasets_from_function(feed.make)
    iterator = iter(dataset) if feed.repeat else None
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    model.stop_training = False
    for epoch in range(first_epoch, last_epoch):
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        started = time.perf_counter()
        totals = _train_epoch(train_step, iterator if feed.repeat else iter(dataset), feed, epoch)
        logs = {"accuracy": totals[1] / totals[2], "loss": totals[0] / totals[2]}  # fit's order
        if val_ds is not None:
            sums = [0.0, 0.0, 0.0]
            for x, y in val_ds:
                sums = [s + float(v) for s, v in zip(sums, eval_step(x, y))]
            logs.update(val_accuracy=sums[1] / sums[2], val_loss=sums[0] / sums[2])
        print(
            f"epoch {epoch + 1}/{last_epoch}: {feed.steps} steps, "
            f"{time.perf_counter() - started:.1f} s, "
            + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()),
            flush=True,
        )
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    for callback in callbacks:
        callback.on_train_end()


def _custom_steps(strategy, model, class_weight, label_smoothing: float) -> tuple:
    """(train_step(iterator) -> summed [loss, correct, count] over the replicas,
    eval_step(x, y) -> the same on one local batch): the custom step's two tf.functions."""
    import keras
    import tensorflow as tf

    optimizer = model.optimizer
    weights = [1.0, 1.0] if not class_weight else [class_weight[0], class_weight[1]]
    weights = tf.constant(weights, tf.float32)

    def replica_step(x, y):
        # the whole step's batch over all replicas: the last batch of an epoch can be short
        size = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, tf.shape(y)[0]
        )
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            per_example = keras.losses.binary_crossentropy(
                y, p, label_smoothing=label_smoothing
            ) * tf.gather(weights, tf.cast(y[:, 0], tf.int32))  # (b,)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=size)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.cast(p > 0.5, tf.float32), y), tf.float32))
        return tf.reduce_sum(per_example), correct, tf.cast(tf.shape(y)[0], tf.float32)

    @tf.function
    def train_step(iterator):
        sums = strategy.run(replica_step, args=next(iterator))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, s, axis=None) for s in sums]

    @tf.function(reduce_retracing=True)
    def eval_step(x, y):
        p = model(x, training=False)
        correct = tf.cast(tf.equal(tf.cast(p > 0.5, tf.float32), y), tf.float32)
        return (
            # the same loss as model.fit reports for validation: smoothed targets too
            tf.reduce_sum(keras.losses.binary_crossentropy(y, p, label_smoothing=label_smoothing)),
            tf.reduce_sum(correct),
            tf.cast(tf.shape(y)[0], tf.float32),
        )

    return train_step, eval_step


def _train_epoch(train_step, iterator, feed: Feed, epoch: int) -> list[float]:
    """[summed loss, correct, images] of one epoch's `feed.steps` steps; a peer that stopped
    (crash, kill, lost machine: the collectives abort) is one line saying how to resume."""
    import tensorflow as tf

    totals = [0.0, 0.0, 0.0]
    try:
        for _ in range(feed.steps):
            totals = [t + float(v) for t, v in zip(totals, train_step(iterator))]
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as err:
        raise UserError(
            f"training stopped in epoch {epoch + 1}: {err.message.splitlines()[0]} "
            "(another worker stopped?); start every worker again with: "
            f"{command('train')} resume RUN_DIR"
        ) from None
    return totals
