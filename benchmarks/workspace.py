"""Benchmark: one workspace shared by machines (issue 12), in one run of this script.

Two "machines" are two homes (FREEZEFLOW_HOME and PREFECT_HOME of their own) on one Prefect server and one
``gs://`` workspace in the fake-gcs-server emulator (loopback). Every number is a whole ``freezeflow run``
process, as a user starts it:

* ``cached run, machine B`` against ``cached run, machine A`` (A ran the flow cold, B never ran it):
  goal <= 1.2x. Both take ``run``'s cached fast path: records and object metadata, no Prefect run.
* ``cold run, gs:// workspace`` against ``cold run, local workspace`` (``--no-cache``, each on a fresh
  workspace): goal <= 1.3x.

Measurements are interleaved and repeated (median reported) so the load of a shared machine falls on all of
them alike. The Prefect server and the emulator are started here and stopped at the end. Prints a table and
writes benchmarks/results/workspace.json.

    python benchmarks/workspace.py [--repeats 3] [--epochs 150]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results" / "workspace.json"

from tests.gcs_support import Emulator  # noqa: E402  (the emulator the tests use, started the same way)
from tests.support.ports import free_port  # noqa: E402


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    log = open(home / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit(f"the Prefect server did not answer; see {home / 'server.log'}")


def run(machine: Path, api: str, emulator: str, *args: str) -> float:
    (machine / "prefect").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    env.update({"PREFECT_HOME": str(machine / "prefect"), "FREEZEFLOW_HOME": str(machine / "freezeflow"),
                "PREFECT_API_URL": api, "STORAGE_EMULATOR_HOST": emulator, "PYTHONPATH": str(REPO),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "freezeflow", "run", *args], cwd=machine, env=env,
                          capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"freezeflow run {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=150)
    options = parser.parse_args()
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    root = Path(tempfile.mkdtemp(prefix="freezeflow-bench-workspace-"))
    (root / "server").mkdir()
    emulator = Emulator(root / "gcs").start()
    server, api = start_server(root / "server")
    client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                            client_options=ClientOptions(api_endpoint=emulator.url))
    times: dict[str, list[float]] = {k: [] for k in ("cached A", "cached B", "cold gs", "cold local")}
    try:
        for repeat in range(options.repeats):
            bucket = client.create_bucket(f"bench-{uuid.uuid4().hex[:12]}").name
            shared = ["--workspace", f"gs://{bucket}/team", "--epochs", str(options.epochs),
                      "--dest", str(root / f"dest-{repeat}"), "--seed", str(repeat)]
            machine_a, machine_b = root / f"a-{repeat}", root / f"b-{repeat}"
            times["cold gs"].append(run(machine_a, api, emulator.url, *shared, "--no-cache"))
            times["cold local"].append(run(root / f"local-{repeat}", api, emulator.url, "--workspace",
                                           str(root / f"local-ws-{repeat}"), "--epochs", str(options.epochs),
                                           "--dest", str(root / f"dest-local-{repeat}"), "--seed", str(repeat),
                                           "--no-cache"))
            times["cached A"].append(run(machine_a, api, emulator.url, *shared))
            times["cached B"].append(run(machine_b, api, emulator.url, *shared))
            print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    finally:
        server.kill()
        server.wait(timeout=30)
        emulator.stop()
    median = {k: statistics.median(v) for k, v in times.items()}
    rows = [("cached run, machine B / machine A", median["cached B"] / median["cached A"], 1.2),
            ("cold run, gs:// / local workspace", median["cold gs"] / median["cold local"], 1.3)]
    print(f"\n{'measure':40} {'median s':>10}")
    for name, value in median.items():
        print(f"{name:40} {value:10.2f}")
    print(f"\n{'ratio':40} {'value':>10} {'goal':>6}")
    for name, ratio, goal in rows:
        print(f"{name:40} {ratio:10.2f} {'<= ' + str(goal):>6} {'met' if ratio <= goal else 'NOT met'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "repeats": options.repeats, "epochs": options.epochs, "seconds": times, "median": median,
        "ratios": {name: {"value": ratio, "goal": goal} for name, ratio, goal in rows},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
