"""Benchmark: the commands that need neither Prefect nor TensorFlow, against starting Python (issue 13).

Times whole processes as a user starts them: ``freezeflow --help``, ``freezeflow ls DEST``, ``freezeflow
inspect frozen_graph.pb`` and a fully cached ``freezeflow run`` (the fast path that reads the cache
without Prefect), each against ``python -c pass`` (the interpreter's own start, the floor) measured in the
same run. The measurements are interleaved round by round so a shared machine's load falls on all alike;
medians are reported with the load average. Targets: ``--help``, ``ls`` and ``inspect`` <= 0.5 s each.

The files come from the guide's steps (``benchmarks/guide_baseline.py``: checkpoint, frozen graph,
SavedModel), the frozen graph and SavedModel published to a local destination with the project's own
publisher; the cached run needs one real ``freezeflow run`` first (Prefect's temporary server), which is
not timed. Prints a table and writes benchmarks/results/light_commands.json.

    python benchmarks/light_commands.py [--repeats 7]
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results" / "light_commands.json"
FREEZEFLOW = [sys.executable, "-m", "freezeflow"]
TARGET_SECONDS = 0.5

from benchmarks.run_cost import environment, measure  # noqa: E402  (one way of timing a process)


def publish_guide_version(scratch: Path, env: dict[str, str]) -> Path:
    """The guide's files, then a published version of its frozen graph and SavedModel; returns the destination."""
    guide = scratch / "guide"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "guide_baseline.py"), str(guide)], env=env,
                   check=True, capture_output=True, timeout=600)
    from tasks.core.digests import file_sha256
    from tasks.storage.base import PublishFile
    from tasks.storage.local import LocalDestination

    saved_model = guide / "saved_model" / "1"
    sources = [(guide / "frozen_graph.pb", "frozen_graph.pb")] + [
        (path, path.relative_to(saved_model).as_posix()) for path in sorted(saved_model.rglob("*")) if path.is_file()]
    files = [PublishFile(source=path, name=name, sha256=file_sha256(path), size=path.stat().st_size)
             for path, name in sources]
    destination = scratch / "published"
    LocalDestination(str(destination)).publish("guide", files, {"parameters": {}})
    return destination


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="freezeflow-light-"))
    env = environment(scratch / "server-home", FREEZEFLOW_SERVER="ephemeral")
    destination = publish_guide_version(scratch, env)
    frozen = destination / "guide" / "1" / "frozen_graph.pb"
    workspace = scratch / "workspace"
    workspace.mkdir()
    run = ["run", "--epochs", "120", "--dest", str(destination)]
    measure(FREEZEFLOW + run, workspace, env)  # the real run that fills the cache (not timed)

    commands = {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "freezeflow --help": FREEZEFLOW + ["--help"],
        "freezeflow ls DEST": FREEZEFLOW + ["ls", str(destination)],
        "freezeflow inspect frozen_graph.pb": FREEZEFLOW + ["inspect", str(frozen)],
        "freezeflow run, fully cached": FREEZEFLOW + run,
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in commands}
    loads = []
    for round_ in range(args.repeats):
        loads.append(os.getloadavg()[0])
        for name, command in commands.items():
            value = measure(command, workspace, env)
            runs[name].append({"seconds": value["seconds"], "peak_rss_mib": value["peak_rss_mib"]})
        print(f"  round {round_ + 1}/{args.repeats}: " + ", ".join(
            f"{name.split(' (')[0]} {values[-1]['seconds']:.2f}" for name, values in runs.items()), flush=True)
    cached_out = measure(commands["freezeflow run, fully cached"], workspace, env)["stdout"]
    if "no Prefect run was recorded" not in cached_out:
        raise SystemExit(f"the cached run went through Prefect:\n{cached_out}")

    floor = statistics.median(v["seconds"] for v in runs["python -c pass (floor)"])
    median: dict[str, dict[str, Any]] = {}
    print(f"\nload average (1 min) during the rounds: {min(loads):.1f}-{max(loads):.1f}")
    print(f"{'command':38} {'median s':>9} {'- floor':>8} {'peak MiB':>9}  target")
    for name, values in runs.items():
        seconds = statistics.median(v["seconds"] for v in values)
        peak = statistics.median(v["peak_rss_mib"] for v in values)
        target = ""
        if name.startswith(("freezeflow --help", "freezeflow ls", "freezeflow inspect")):
            target = f"<= {TARGET_SECONDS} s: {'met' if seconds <= TARGET_SECONDS else 'NOT met'}"
        median[name] = {"seconds": seconds, "above_floor": seconds - floor, "peak_rss_mib": peak, "n": len(values),
                        "target": target}
        print(f"{name:38} {seconds:9.3f} {seconds - floor:8.3f} {peak:9.0f}  {target}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_during": loads,
                    "load_after": os.getloadavg()},
        "repeats": args.repeats, "median": median, "runs": runs,
    }, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
