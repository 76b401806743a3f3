"""Benchmark: converting a sweep of small TF1 checkpoints with ``freezeflow convert-many`` against the shell
loop it replaces, in one run on one machine.

Writes N guide checkpoints (``y = m*x + b``, each its own m and b), starts a Prefect server on
loopback that every variant reports to (so none pays for an embedded server), and times, each with a
fresh workspace and destination (nothing cached):

* ``shell loop``: ``for c in ...; do freezeflow convert $c ...; done``: one process, one TensorFlow
  import and one flow run per checkpoint, as teams do today;
* ``convert-many, 2 workers``: ``freezeflow convert-many DIR --workers 2`` (a local Dask cluster);
* ``convert-many, 1 worker``: the same with ``--workers 1``, to separate parallelism from the rest.

Peak memory per worker is the largest resident set of any Dask worker process of the local cluster,
sampled every 0.2 s (the CLI process and the scheduler are not workers). Every variant must publish
N versions, each checked against its own m*x+b in the manifest's validation.

Prints a table and writes JSON to benchmarks/results/convert_many.json. Usage:

    python benchmarks/convert_many.py                 # 32 checkpoints
    python benchmarks/convert_many.py --count 8       # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.guide import write_sweep  # noqa: E402
from tests.support.dask_cluster import free_port  # noqa: E402

GOAL_VS_LOOP = 4.0
GOAL_VS_ONE_WORKER = 1.6


def base_env(api_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    env.update({"PREFECT_API_URL": api_url, "FREEZEFLOW_HOME": str(home), "PYTHONPATH": str(REPO),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                "PREFECT_HOME": str(home / "prefect")})
    return env


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(root / "server-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=(root / "server.log").open("wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"prefect server did not start: {(root / 'server.log').read_text()[-2000:]}")


class WorkerMemory:
    """Peak resident memory of each Dask worker process below ``root_pid`` (nannies and the scheduler excluded)."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid, self.peaks, self._stop = root_pid, {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                children = psutil.Process(self.root_pid).children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for child in children:
                try:
                    if "distributed" in " ".join(child.cmdline()) or "spawn_main" in " ".join(child.cmdline()):
                        self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), child.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.2)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        return sorted(self.peaks.values(), reverse=True)


def check_published(dest: Path, models: dict[str, tuple[float, float]]) -> None:
    """Every model published as version 1, each giving its own m*x+b.

    The manifests hold the predictions on generated reference inputs (seed 0: the same inputs for
    every model) but not the inputs; so x = (y - b) / m must come out the same for every model and
    every format, which no model published with another's m and b would give."""
    common = None
    for name, (m, b) in models.items():
        predictions = json.loads((dest / name / "1" / "manifest.json").read_text())["validation"]["predictions"]
        assert set(predictions) == {"checkpoint", "frozen_graph", "saved_model"}, (name, predictions)
        for source, outputs in predictions.items():
            inputs = [(y - b) / m for y in outputs]
            common = common or inputs
            assert len(inputs) == len(common) and all(abs(x - c) < 1e-4 for x, c in zip(inputs, common)), \
                (name, source, outputs, common)


def run_variant(label: str, command: list[str], env: dict[str, str], dest: Path,
                models: dict[str, tuple[float, float]], log: Path) -> dict[str, Any]:
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=dest.parent, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    memory = WorkerMemory(process.pid)
    code = process.wait(timeout=7200)
    seconds = time.monotonic() - started
    peaks = memory.stop()
    if code != 0:
        raise RuntimeError(f"{label} exited {code}: {log.read_text()[-3000:]}")
    check_published(dest, models)
    return {"variant": label, "seconds": round(seconds, 1), "per_checkpoint_seconds": round(seconds / len(models), 2),
            "peak_worker_rss_mib": [round(p / 2**20) for p in peaks]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=32, help="checkpoints in the sweep (default 32)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="freezeflow-bench-fleet-"))
    models = write_sweep(root / "sweep", args.count)
    server, api_url = start_server(root)
    freezeflow = [sys.executable, "-m", "freezeflow"]
    results = []
    try:
        variants = [
            ("shell loop of `freezeflow convert`", lambda dest: ["bash", "-c", "set -e; " + "; ".join(
                shlex.join([*freezeflow, "convert", str(root / "sweep" / name), "--output-node", "y",
                            "--model-name", name, "--dest", str(dest)]) for name in models)]),
            ("convert-many, 2 workers", lambda dest: [*freezeflow, "convert-many", str(root / "sweep"),
                                                     "--output-node", "y", "--workers", "2", "--dest", str(dest)]),
            ("convert-many, 1 worker", lambda dest: [*freezeflow, "convert-many", str(root / "sweep"),
                                                    "--output-node", "y", "--workers", "1", "--dest", str(dest)]),
        ]
        for number, (label, command) in enumerate(variants):
            folder = root / f"variant-{number}"
            folder.mkdir()
            dest = folder / "published"
            print(f"running {label} ...", file=sys.stderr, flush=True)
            results.append(run_variant(label, command(dest), base_env(api_url, folder / "home"), dest, models,
                                       folder / "output.log"))
    finally:
        server.terminate()
        server.wait(timeout=60)
    loop, two, one = (r["seconds"] for r in results)
    summary = {
        "checkpoints": args.count, "cpus": os.cpu_count(), "python": platform.python_version(),
        "variants": results,
        "speedup_vs_shell_loop": round(loop / two, 2), "goal_vs_shell_loop": GOAL_VS_LOOP,
        "speedup_vs_one_worker": round(one / two, 2), "goal_vs_one_worker": GOAL_VS_ONE_WORKER,
        "load_average_at_end": os.getloadavg(),
    }
    print(f"\n{args.count} checkpoints, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'variant':38} {'seconds':>8} {'s/ckpt':>7}  peak RSS per worker (MiB)")
    for r in results:
        print(f"{r['variant']:38} {r['seconds']:8.1f} {r['per_checkpoint_seconds']:7.2f}  "
              f"{', '.join(map(str, r['peak_worker_rss_mib'])) or '-'}")
    print(f"convert-many (2 workers) vs shell loop: {summary['speedup_vs_shell_loop']}x (goal >= {GOAL_VS_LOOP}x)")
    print(f"convert-many 2 workers vs 1 worker:     {summary['speedup_vs_one_worker']}x (goal >= {GOAL_VS_ONE_WORKER}x)")
    out = REPO / "benchmarks" / "results" / "convert_many.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
