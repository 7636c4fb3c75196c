"""Multi-worker training placed by Ray: `gender_train.py --data DIR --ray-workers N`.

Ray Train's TensorFlow trainer runs `model.fit` under MultiWorkerMirroredStrategy, which Keras 3
cannot do (gender.distribute says why); so N plain Ray actors each take a free port on their
node, receive the cluster's TF_CONFIG from this process, and run the toolkit's own training
(`gender.training.train`, the custom step of gender.distribute) exactly as N hand-started
processes would. Worker 0 is the chief: it alone writes the run folder, prints the epoch lines
and returns the folder. A worker that dies (a lost node, a killed process) stops the run with one
line; `resume RUN_DIR --ray-workers N` continues from its last finished epoch.
"""

import contextlib
import dataclasses
import io
import json
import os
import socket
import sys
import time
from pathlib import Path

from gender import UserError, distribute, interrupt
from gender.config import TrainConfig
from gender.console import command, quiet
from gender.ray_jobs import is_ray_chatter, ray_reason, ray_session
from gender.training import train

# How long to wait for the cluster to offer every worker its CPU before giving up.
PLACEMENT_TIMEOUT = 120.0


class TrainWorker:
    """One training process of the cluster (a Ray actor)."""

    def __init__(self) -> None:
        quiet()  # a process of the command: as quiet as the command (before TensorFlow loads)

    def address(self) -> str:
        """host:port this worker's TensorFlow server will listen on (a port free now)."""
        import ray

        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        return f"{ray.util.get_node_ip_address()}:{port}"

    def train(
        self, tf_config: dict, config: TrainConfig, resume: str | None, peer_timeout: float | None
    ) -> str | None:
        """Run gender.training.train as task `tf_config['task']`; the run folder on the chief."""
        os.environ["TF_CONFIG"] = json.dumps(tf_config)  # read by select_strategy, below

        # the other workers print the chief's epoch lines and warnings again: only the chief
        # speaks (an error still comes back, raised)
        with contextlib.ExitStack() as quiet:
            if not distribute.is_chief():
                quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
                quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
            run_dir = train(config, resume, "auto", peer_timeout)
        return str(run_dir) if run_dir else None


def train_on_ray(
    config: TrainConfig,
    resume: str | Path | None,
    workers: int,
    address: str | None,
    verbose: bool = False,
    peer_timeout: float | None = None,
) -> Path:
    """Train on `workers` Ray actors and return the chief's run folder.

    Raises:
        UserError: one line when a worker dies or stops with an error (the others are stopped).
    """
    if workers < 2:
        raise UserError(f"--ray-workers {workers}: 2 or more (one worker trains without Ray)")
    started = time.time()
    # every worker, on any node, reads and writes the same folders: absolute paths (a shared
    # file system on a cluster, docs/scaling.md)
    data = [str(Path(folder).absolute()) for folder in config.data]
    config = dataclasses.replace(config, data=data, out=str(Path(config.out).absolute()))
    resume = Path(resume).absolute() if resume else None
    again = f"{command('train')} resume {{run}} --ray-workers {workers}" + (
        f" --ray {address}" if address else ""
    )
    with ray_session(address, verbose, log_workers=True) as ray:
        if not verbose:
            _plain_worker_output()
        from ray.util.placement_group import remove_placement_group

        group, actors = _place_workers(ray, workers)
        try:
            addresses = ray.get([a.address.remote() for a in actors])
            cluster = {"worker": addresses}
            print(f"training on Ray: {workers} workers at {', '.join(addresses)}", flush=True)
            interrupt.keep(
                "the run folder keeps its last finished epoch; continue with: "
                + again.format(run="RUN_DIR")
            )
            calls = {
                a.train.remote(
                    {"cluster": cluster, "task": {"type": "worker", "index": i}},
                    config,
                    str(resume) if resume else None,
                    peer_timeout,
                ): i
                for i, a in enumerate(actors)
            }
            run = resume or (lambda: _new_run_folder(config, started) or "RUN_DIR")
            run_dir = _wait_for_workers(ray, calls, workers, again, run)
        finally:
            for a in actors:
                ray.kill(a)
            remove_placement_group(group)
    return Path(run_dir)


def _place_workers(ray, workers: int) -> tuple:
    """(placement group, actors): `workers` TrainWorker actors of one CPU each, placed SPREAD
    (one worker per node where the cluster has as many nodes, each then training on all its
    node's cores; several per node otherwise); one line when the cluster has too few CPUs."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group([{"CPU": 1}] * workers, strategy="SPREAD")
    ready, _ = ray.wait([group.ready()], timeout=PLACEMENT_TIMEOUT)
    if not ready:
        remove_placement_group(group)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        raise UserError(
            f"--ray-workers {workers}: the Ray cluster did not offer {workers} CPUs in "
            f"{PLACEMENT_TIMEOUT:.0f} s (it has {cpus}); add nodes or ask for fewer workers"
        )
    actor = ray.remote(num_cpus=1, max_restarts=0)(TrainWorker)
    actors = [
        actor.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group, i)).remote()
        for i in range(workers)
    ]
    return group, actors


def _wait_for_workers(ray, calls: dict, workers: int, again: str, run) -> str:
    """The chief's run folder once every worker's `train` call has returned; a worker that
    died or raised is one line naming the resume command (`run`: the run folder, or a function
    finding the new one)."""
    run_dir, pending = None, list(calls)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            result = ray.get(done[0])
        except ray.exceptions.RayActorError as err:
            where = run() if callable(run) else run
            raise UserError(
                f"training stopped: worker {calls[done[0]]} of {workers} died "
                f"({ray_reason(err)}); continue with: {again.format(run=where)}"
            ) from None
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, UserError):  # its hint restarts processes by hand
                said = str(cause).split("; start every worker again")[0]
                where = run() if callable(run) else run
                tail = f"; continue with: {again.format(run=where)}" * (said != str(cause))
                raise UserError(said + tail) from None
            raise UserError(
                f"worker {calls[done[0]]}: {ray_reason(err)} (--verbose shows its log)"
            ) from None
        run_dir = run_dir or result
    return run_dir


def _plain_worker_output() -> None:
    """The workers' lines printed as they wrote them, as a local run prints them: without Ray's
    `(TrainWorker pid=...)` prefix, and without the notes of Ray's own C++ core.

    Ray hands every forwarded line to the handlers of one dispatcher (ray._private, the pinned
    version's); where that is missing, Ray's own printing stays.
    """
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return

    def show(data: dict) -> None:
        if data.get("pid") in ("raylet", "autoscaler"):
            return
        sink = sys.stderr if data.get("is_err") else sys.stdout
        for line in data.get("lines", []):
            if not is_ray_chatter(line):
                print(line, file=sink, flush=True)

    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("gender_print_logs", show)


def _new_run_folder(config: TrainConfig, since: float) -> str | None:
    """The run folder the chief made for this run (the newest of its model's, made after
    `since`), as far as this machine sees `config.out`."""
    folders = [
        p for p in Path(config.out).glob(f"{config.model}-*")
        if p.is_dir() and p.stat().st_mtime >= since - 1
    ]  # fmt: skip
    return str(max(folders, key=lambda p: p.stat().st_mtime)) if folders else None
