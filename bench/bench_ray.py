"""Prediction on Ray: images/s over 2,000 face crops, the plain command against --ray.

    python bench/bench_ray.py                  # ~3-5 min on 2 cores
    python bench/bench_ray.py --per-class 500 --repeat 3

Each figure is one fresh process of `gender_single_predict.py DIR --csv OUT` (start-up, listing,
model, rows written), the best of --repeat runs:
  plain         the command as it is (int8 LiteRT, decoding threads beside the model)
  ray local N   --ray with no address: a local Ray of N CPUs started and stopped by the command
                (GENDER_RAY_CPUS=N), so N actors
  ray joined    --ray ADDRESS on a Ray already running here with 2 CPUs (`ray start --head`):
                what a cluster's user pays per command
Then two Ray nodes simulated on this machine, each `ray start ... --num-cpus 1 --block` (a head,
and a second node joining it): the same collection on one node, then on both. Beside each
command's wall time, its steady rate: the images after the first block over the time after it
(the actors' start-up excluded), measured by a driver in this script's child process.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import FACES_UTK, ROOT, describe, link_sample

PYTHON = sys.executable
RAY = str(Path(sys.executable).with_name("ray"))
# the child that times blocks as they come (the --ray command's own driver loop, with clocks)
TIMED = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from gender.console import quiet; quiet()  # as the --ray command
from gender.predictor import Predictor
from gender.ray_jobs import classify_blocks, list_images, ray_session
paths = list_images([sys.argv[2]])
predictor = Predictor.load(None)
started = time.perf_counter()
with ray_session(sys.argv[3]) as ray:
    marks = []
    for block, _, _ in classify_blocks(ray, paths, predictor, 64):
        marks.append((time.perf_counter() - started, len(block)))
print(json.dumps(marks))
"""


def wall(argv: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def predict(folder: Path, out: Path, *flags: str, env: dict | None = None) -> float:
    out.unlink(missing_ok=True)
    argv = [PYTHON, "gender_single_predict.py", str(folder), "--csv", str(out), *flags]
    return wall(argv, env)


def steady(folder: Path, address: str, env: dict) -> tuple[float, float]:
    """(seconds to the last block, images/s after the first block) of one timed child run."""
    done = subprocess.run(
        [PYTHON, "-c", TIMED, str(ROOT), str(folder), address],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    marks = json.loads(done.stdout.strip().splitlines()[-1])
    rest = sum(n for _, n in marks[1:])
    return marks[-1][0], rest / max(marks[-1][0] - marks[0][0], 1e-9)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(head: str | None, env: dict) -> subprocess.Popen:
    """`ray start --num-cpus 1 --block`: a head (head None) or a node joining `head`; stopping
    this process stops the node."""
    argv = [RAY, "start", "--num-cpus", "1", "--block", "--disable-usage-stats"]
    if head is None:
        argv += ["--head", "--port", head_port := str(free_port()), "--include-dashboard=false"]
    else:
        argv += ["--address", head]
    node = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node.address = f"127.0.0.1:{head_port}" if head is None else head
    return node


def wait_cpus(address: str, cpus: int, env: dict) -> None:
    code = (
        "import ray, sys, time\n"
        "end = time.time() + 90\n"
        "while True:\n"
        "    try:\n"
        "        ray.init(address=sys.argv[1], logging_level='ERROR')\n"
        "        break\n"
        "    except ConnectionError:\n"
        "        if time.time() > end:\n"
        "            raise\n"
        "        time.sleep(1)\n"
        "while ray.cluster_resources().get('CPU', 0) < int(sys.argv[2]) and time.time() < end:\n"
        "    time.sleep(0.5)\n"
        "sys.exit(0 if ray.cluster_resources().get('CPU', 0) >= int(sys.argv[2]) else 1)\n"
    )
    subprocess.run(
        [PYTHON, "-c", code, address, str(cpus)], env=env, check=True, capture_output=True
    )


def stop(nodes: list[subprocess.Popen]) -> None:
    for node in reversed(nodes):
        node.terminate()
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FACES_UTK), help="a man/woman folder")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    print(describe())
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    folder = link_sample(Path(args.data), work / "crops", args.per_class)
    images = 2 * args.per_class
    out = work / "rows.csv"
    # Ray 2.60 turns token authentication on for a cluster started with `ray start --head`; a
    # node or driver joining it must be in token mode too (the token: ~/.ray/auth_token)
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    results = {}

    def best(name, fn):
        seconds = min(fn() for _ in range(args.repeat))
        results[name] = seconds
        print(f"{name:<28} {seconds:6.2f} s  {images / seconds:7.0f} images/s", flush=True)

    try:
        best("plain", lambda: predict(folder, out))
        for cpus in (1, 2):
            local = {**env, "GENDER_RAY_CPUS": str(cpus)}
            best(
                f"ray local {cpus} CPU",
                lambda local=local: predict(folder, out, "--ray", env=local),
            )
        for count in (1, 2):
            nodes = [start_node(None, env)]
            try:
                if count == 2:
                    nodes.append(start_node(nodes[0].address, env))
                wait_cpus(nodes[0].address, count, env)
                address = nodes[0].address
                joined = ["--ray", address]
                best(f"ray joined, {count} node(s)",
                     lambda joined=joined: predict(folder, out, *joined, env=env))  # fmt: skip
                runs = [steady(folder, address, env) for _ in range(args.repeat)]
                last, rate = min(r[0] for r in runs), max(r[1] for r in runs)
                results[f"steady {count}"] = rate
                print(f"{'  driver in-process':<28} {last:6.2f} s to the last block; "
                      f"{rate:7.0f} images/s after the first", flush=True)  # fmt: skip
            finally:
                stop(nodes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plain = results["plain"]
    for name in ("ray local 1 CPU", "ray local 2 CPU", "ray joined, 1 node(s)"):
        print(f"{name}: {results[name] / plain:.2f}x the plain command's wall time")
    one, two = results["ray joined, 1 node(s)"], results["ray joined, 2 node(s)"]
    print(
        f"2 nodes against 1: {one / two:.2f}x end to end, "
        f"{results['steady 2'] / results['steady 1']:.2f}x steady"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
