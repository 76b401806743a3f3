"""Benchmark: what a ``freezeflow`` command costs against the guide's steps in one process (issue 13).

Every number is a whole process as a user starts it (interpreter, imports, work), its wall time and
peak RSS, measured in one run of this script against the baseline ``benchmarks/guide_baseline.py``
(build and train the guide's model, checkpoint, restore, freeze, export, load, predict; no Prefect):

* ``first run, fresh machine``: no server, no workspace, the default mode (starts the local server,
  migrates its database) -- against ``first run, today``: the same with ``FREEZEFLOW_SERVER=ephemeral``
  (Prefect's temporary server, its database in a fresh workspace), as every run was before;
* ``cold run, server up``: ``freezeflow run --no-cache`` with the local server already up (target <= 1.5x);
* ``cached run``: ``freezeflow run`` with every stage cached (target <= 0.25x and peak RSS <= 100 MiB);
* ``--help``, ``ls``, ``inspect`` of a frozen graph (target <= 0.5 s each).

The repeated measurements are interleaved (baseline, cold, cached, ...) so the load of a shared
machine falls on all of them alike; the median is reported. The local server lives in a temporary
home and is stopped at the end. Prints a table and writes benchmarks/results/run_cost.json.

    python benchmarks/run_cost.py [--repeats 3]
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "run_cost.json"
FREEZEFLOW = [sys.executable, "-m", "freezeflow"]


def measure(command: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``command`` to its end: its wall time and its own peak RSS (wait4 gives the child's own rusage)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = os.fork()
        if child == 0:  # pragma: no cover - the child
            try:
                os.chdir(cwd)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                os.execve(command[0], command, env)
            finally:
                os._exit(127)
        _, status, usage = os.wait4(child, 0)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}:\n{stderr[-3000:]}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, "stdout": stdout[-2000:],
            "stderr": stderr[-2000:]}


def environment(server_home: Path, **extra: str) -> dict[str, str]:
    # A user's shell writes bytecode: without it (this project's CI machines set PYTHONDONTWRITEBYTECODE)
    # every command would compile the project's sources again, a cost no user pays after the first run.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "FREEZEFLOW_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"PYTHONPATH": str(REPO), "FREEZEFLOW_SERVER_HOME": str(server_home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    env.update(extra)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="freezeflow-run-cost-"))
    server_home = scratch / "server-home"
    env = environment(server_home)
    results: dict[str, list[dict[str, Any]]] = {}

    def record(name: str, value: dict[str, Any]) -> None:
        results.setdefault(name, []).append(value)
        print(f"  {name}: {value['seconds']:.2f} s, {value['peak_rss_mib']:.0f} MiB", flush=True)

    try:
        # first runs: a fresh workspace each, today's way and the new default (which starts the server)
        today = scratch / "today"
        today.mkdir()
        record("first run, today (ephemeral)",
               measure(FREEZEFLOW + ["run"], today, environment(server_home, FREEZEFLOW_SERVER="ephemeral")))
        fresh = scratch / "fresh"
        fresh.mkdir()
        record("first run, fresh machine", measure(FREEZEFLOW + ["run"], fresh, env))

        for i in range(args.repeats):
            record("guide's steps (baseline)", measure(
                [sys.executable, str(REPO / "benchmarks" / "guide_baseline.py"), str(scratch / f"guide-{i}")], scratch, env))
            record("cold run, server up", measure(FREEZEFLOW + ["run", "--no-cache"], fresh, env))
            record("cached run", measure(FREEZEFLOW + ["run"], fresh, env))
            record("--help", measure(FREEZEFLOW + ["--help"], fresh, env))
            record("ls", measure(FREEZEFLOW + ["ls", "published"], fresh, env))
            record("inspect frozen graph", measure(
                FREEZEFLOW + ["inspect", "published/linear/1/frozen_graph.pb"], fresh, env))
    finally:
        subprocess.run(FREEZEFLOW + ["server", "stop"], cwd=scratch, env=env, capture_output=True, timeout=120)

    median = {name: {"seconds": statistics.median(v["seconds"] for v in values),
                     "peak_rss_mib": statistics.median(v["peak_rss_mib"] for v in values), "n": len(values)}
              for name, values in results.items()}
    baseline = median["guide's steps (baseline)"]["seconds"]
    today_first = median["first run, today (ephemeral)"]["seconds"]
    checks = {
        "cold run, server up": ("ratio", 1.5), "cached run": ("ratio", 0.25),
        "first run, fresh machine": ("vs today", 1.0),
        "--help": ("seconds", 0.5), "ls": ("seconds", 0.5), "inspect frozen graph": ("seconds", 0.5),
    }
    print(f"\n{'measurement':34} {'seconds':>8} {'x guide':>8} {'peak MiB':>9}  target")
    for name, value in median.items():
        ratio = value["seconds"] / baseline
        value["ratio_to_guide"] = ratio
        target = ""
        if name in checks:
            kind, bound = checks[name]
            got = {"ratio": ratio, "vs today": value["seconds"] / today_first, "seconds": value["seconds"]}[kind]
            ok = got <= bound
            if name == "cached run":
                ok = ok and value["peak_rss_mib"] <= 100
                target = f"<= {bound}x and <= 100 MiB: {'met' if ok else 'NOT met'}"
            else:
                unit = {"ratio": "x guide", "vs today": "x today's first run", "seconds": "s"}[kind]
                target = f"<= {bound} {unit}: {'met' if ok else 'NOT met'} ({got:.2f})"
            value["target"], value["met"] = target, ok
        print(f"{name:34} {value['seconds']:8.2f} {ratio:8.2f} {value['peak_rss_mib']:9.0f}  {target}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "repeats": args.repeats, "median": median, "runs": results,
    }, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
