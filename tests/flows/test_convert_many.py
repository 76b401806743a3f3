"""convert_many on a real Dask cluster on loopback (``dask scheduler`` and ``dask worker`` processes with a bare
environment) reporting to a real Prefect API: a sweep of TF1 checkpoints with one corrupt and one
missing, a re-run, and a worker killed mid-batch."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.guide import write_sweep
from tests.support.dask_cluster import DaskCluster, start_cluster

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

REPO = Path(__file__).resolve().parents[2]
SWEEP = 12
INPUTS = [2.0, 4.0, 6.0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    started = start_cluster(tmp_path_factory.mktemp("dask"), ["w-a", "w-b"])
    yield started
    started.stop()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """12 good checkpoints and a corrupt one in a folder, and a JSON Lines file naming one that is missing."""
    root = tmp_path_factory.mktemp("sweep")
    models = write_sweep(root / "runs", SWEEP)
    corrupt = root / "runs" / "run-corrupt"
    shutil.copytree(root / "runs" / "run-00", corrupt)
    (corrupt / "model.index").write_bytes(b"not an index")
    listing = root / "more.jsonl"
    listing.write_text(json.dumps({"checkpoint": "gone/model", "model_name": "gone", "output_nodes": ["y"]}) + "\n")
    return {"folder": root / "runs", "listing": listing, "models": models}


def convert_many(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """The command in a fresh process, reporting to the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    env.update({"PREFECT_API_URL": str(PREFECT_API_URL.value()), "FREEZEFLOW_HOME": str(home),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO)})
    return subprocess.run([sys.executable, "-m", "freezeflow", "convert-many", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def read_back(version: Path) -> tuple[list[float], list[float]]:
    """What a user gets from the published files: the frozen graph's and the SavedModel's outputs at INPUTS."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((version / "frozen_graph.pb").read_bytes())
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            frozen = session.run("y:0", {"x:0": INPUTS}).tolist()
    serving = tf.saved_model.load(str(version)).signatures["serving_default"]
    saved = serving(inputs=tf.constant(INPUTS))["outputs"].numpy().tolist()
    return frozen, saved


def test_sweep_publishes_every_good_checkpoint_fails_the_bad_two_and_reruns_cached(
    cluster: DaskCluster, sweep: dict[str, Any], tmp_path: Path, workspace_home: Path
) -> None:
    dest = tmp_path / "published"
    args = [str(sweep["folder"]), str(sweep["listing"]), "--output-node", "y", "--dask", cluster.address,
            "--dest", str(dest), "--json"]
    first = convert_many(*args, cwd=tmp_path, home=workspace_home)
    assert first.returncode == 1, first.stderr[-3000:]
    assert first.stderr.strip().splitlines()[-1] == "error: 2 of 14 items failed (12 published, 0 cached, 2 failed of 14)"
    rows = {row["model"]: row for row in json.loads(first.stdout)["items"]}
    assert {m: r["outcome"] for m, r in rows.items() if r["outcome"] != "published"} == {
        "run-corrupt": "failed", "gone": "failed"}
    assert "run-corrupt/model.index is not a TensorFlow tensor bundle index" in rows["run-corrupt"]["reason"]
    assert rows["gone"]["reason"] == f"checkpoint {sweep['listing'].parent}/gone/model: folder " \
                                     f"{sweep['listing'].parent}/gone does not exist"
    assert rows["gone"]["item"] == f"{sweep['listing']}:1"
    assert sorted(p.name for p in dest.iterdir()) == sorted(sweep["models"])  # nothing of the failed two
    for name, (m, b) in sweep["models"].items():
        assert rows[name]["version"] == 1
        assert sorted(p.name for p in (dest / name).iterdir()) == ["1"]
        frozen, saved = read_back(dest / name / "1")
        expected = [m * x + b for x in INPUTS]
        assert frozen == pytest.approx(expected, abs=1e-5), name
        assert saved == pytest.approx(expected, abs=1e-5), name
    # Both workers converted items, and neither started a Prefect server of its own.
    assert {r["worker"] for r in rows.values() if r["worker"]} == {"w-a", "w-b"}
    for worker in cluster.workers.values():
        log = worker.text()
        assert "Task run 'convert-run-" in log, worker.name
        assert "Starting temporary server" not in log, worker.name

    second = convert_many(*args, cwd=tmp_path, home=workspace_home)
    assert second.returncode == 1, second.stderr[-3000:]
    again = {row["model"]: row for row in json.loads(second.stdout)["items"]}
    assert {m: r["outcome"] for m, r in again.items()} == {**{m: "cached" for m in sweep["models"]},
                                                          "run-corrupt": "failed", "gone": "failed"}
    for name in sweep["models"]:
        assert sorted(p.name for p in (dest / name).iterdir()) == ["1"]  # no new version


def test_items_of_a_killed_worker_are_converted_elsewhere_and_published_once(
    cluster: DaskCluster, tmp_path: Path, workspace_home: Path
) -> None:
    models = write_sweep(tmp_path / "runs", 6, start=40)
    doomed = cluster.start_worker("w-doomed")
    cluster.wait_for_workers(["w-a", "w-b", "w-doomed"])
    dest = tmp_path / "published"
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["result"] = convert_many(str(tmp_path / "runs"), "--output-node", "y", "--dask", cluster.address,
                                         "--dest", str(dest), "--json", cwd=tmp_path, home=workspace_home)

    batch = threading.Thread(target=run)
    batch.start()
    killed_while_running = None
    with cluster.client() as client:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and batch.is_alive():
            busy = {info["name"]: address for address, info in client.scheduler_info(n_workers=-1)["workers"].items()}
            processing = client.processing()
            if "w-doomed" in busy and processing.get(busy["w-doomed"]):
                killed_while_running = processing[busy["w-doomed"]]
                time.sleep(1.0)  # inside the conversion, past the task's start
                doomed.kill()
                break
            time.sleep(0.2)
    batch.join(timeout=900)
    assert killed_while_running, "the extra worker never picked up an item"
    result = outcome["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)["items"]
    assert sorted(r["model"] for r in rows) == sorted(models)
    assert {r["outcome"] for r in rows} == {"published"}
    assert "w-doomed" not in {r["worker"] for r in rows}  # its item finished on another worker
    for name in models:
        assert sorted(p.name for p in (dest / name).iterdir()) == ["1"], name  # exactly once


# --- a local cluster, the progress bar, the cap, a hung item ------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
BAR = re.compile(r"converting\s.*?(\d+) done, (\d+) failed of (\d+)\s+(\d+):(\d\d):(\d\d)\s+(?:([\d.]+) items/min)?")


def run_with_terminal(args: list[str], cwd: Path, home: Path, sample: Any = None) -> tuple[int, str, str]:
    """The command with its stderr on a terminal (a pty, 160 columns), as a person runs it; stdout to a pipe.

    ``sample`` is called every 0.2 s with the command's pid while it runs. Returns the exit code, stdout
    and what the terminal showed (ANSI codes removed)."""
    import pty

    from prefect.settings import PREFECT_API_URL

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    env.update({"PREFECT_API_URL": str(PREFECT_API_URL.value()), "FREEZEFLOW_HOME": str(home), "TERM": "xterm",
                "COLUMNS": "160", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO)})
    primary, secondary = pty.openpty()
    stdout = cwd / "stdout.txt"
    with stdout.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "freezeflow", "convert-many", *args], cwd=cwd, env=env,
                                   stdout=out, stderr=secondary, stdin=subprocess.DEVNULL)
    os.close(secondary)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 900
    while process.poll() is None and time.monotonic() < deadline:
        if sample is not None:
            sample(process.pid)
        time.sleep(0.2)
    if process.poll() is None:
        process.kill()
        pytest.fail("convert-many did not finish within 900 s")
    reader.join(timeout=30)
    os.close(primary)
    return process.returncode, stdout.read_text(), ANSI.sub("", shown.decode(errors="replace").replace("\r", "\n"))


def test_a_local_cluster_of_n_workers_runs_items_in_n_processes_shows_a_bar_and_leaves_nothing_running(
    tmp_path: Path, workspace_home: Path
) -> None:
    import psutil

    models = write_sweep(tmp_path / "runs", 3, start=20)
    corrupt = tmp_path / "runs" / "run-bad"
    shutil.copytree(tmp_path / "runs" / "run-20", corrupt)
    (corrupt / "model.index").write_bytes(b"not an index")
    seen: dict[int, str] = {}  # every process below the command while it ran: pid -> command line

    def sample(pid: int) -> None:
        try:
            for child in psutil.Process(pid).children(recursive=True):
                seen.setdefault(child.pid, " ".join(child.cmdline()))
        except psutil.Error:
            pass

    code, out, shown = run_with_terminal(
        [str(tmp_path / "runs"), "--output-node", "y", "--workers", "3", "--dest", str(tmp_path / "published"),
         "--json"], tmp_path, workspace_home, sample)
    assert code == 1, shown[-3000:]
    rows = {row["model"]: row for row in json.loads(out)["items"]}
    assert {m: r["outcome"] for m, r in rows.items()} == {**{m: "published" for m in models}, "run-bad": "failed"}

    # Three worker processes of a local cluster, each converting one of the first three items.
    workers = {pid for pid, command in seen.items() if "spawn_main" in command}
    assert len(workers) == 3, seen
    assert {r["worker"] for r in rows.values() if r["worker"]} == {"0", "1", "2"}
    # Nothing of the cluster is left once the command has returned.
    deadline = time.monotonic() + 10
    while (alive := [p for p in seen if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive, {p: seen[p] for p in alive}

    # The bar the person watched: counts as items finished, then all four, one failed, elapsed time, a rate.
    bars = [m.groups() for m in BAR.finditer(shown)]
    assert bars, shown[-3000:]
    assert bars[0][:3] == ("0", "0", "4")
    finished = [int(done) + int(failed) for done, failed, *_ in bars]
    assert finished == sorted(finished) and len(set(finished)) > 2  # it moved as items finished
    done, failed, total, hours, minutes, seconds, rate = bars[-1]
    assert (done, failed, total) == ("3", "1", "4")
    elapsed = 3600 * int(hours) + 60 * int(minutes) + int(seconds)
    assert elapsed >= 1 and rate is not None
    assert float(rate) == pytest.approx(60 * 4 / elapsed, rel=0.5)  # finished items per minute, near the end


def task_run_intervals(names: list[str]) -> list[tuple[Any, Any]]:
    """Start and end of each named task run, read back from the Prefect API once all are final."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=names)))
            if len(runs) == len(names) and all(r.start_time and r.end_time for r in runs):
                return [(r.start_time, r.end_time) for r in runs]
            if time.monotonic() > deadline:
                pytest.fail(f"task runs {names} not all finished in the API: {[(r.name, r.state) for r in runs]}")
            time.sleep(0.5)


def most_at_once(intervals: list[tuple[Any, Any]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_max_parallel_caps_the_conversions_running_at_once(
    cluster: DaskCluster, tmp_path: Path, workspace_home: Path
) -> None:
    uncapped = write_sweep(tmp_path / "uncapped", 4, start=60)
    capped = write_sweep(tmp_path / "capped", 4, start=70)
    for folder, extra in (("uncapped", []), ("capped", ["--max-parallel", "1"])):
        result = convert_many(str(tmp_path / folder), "--output-node", "y", "--dask", cluster.address, *extra,
                              "--dest", str(tmp_path / "published"), "--json", cwd=tmp_path, home=workspace_home)
        assert result.returncode == 0, result.stderr[-3000:]
    # Two workers run two at once when nothing caps them; with --max-parallel 1, never more than one.
    assert most_at_once(task_run_intervals([f"convert-{m}" for m in uncapped])) == 2
    capped_runs = task_run_intervals([f"convert-{m}" for m in capped])
    assert most_at_once(capped_runs) == 1, sorted(capped_runs)


HANG = '''
import time


def build(ctx):
    while True:  # a model builder that never returns (waiting on a lock, a mount, a server)
        time.sleep(0.5)
'''


def test_a_hung_item_fails_alone_after_item_timeout_and_its_worker_is_restarted(
    cluster: DaskCluster, tmp_path: Path, workspace_home: Path
) -> None:
    import tensorflow as tf
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    models = write_sweep(tmp_path / "runs", 2, start=80)
    tf.train.Checkpoint(v=tf.Variable(1.0)).save(str(tmp_path / "stuck" / "ckpt"))
    (tmp_path / "hang.py").write_text(HANG)
    listing = tmp_path / "batch.jsonl"
    listing.write_text(json.dumps({"checkpoint": str(tmp_path / "stuck"), "model_name": "a-stuck",
                                   "entrypoint": f"{tmp_path / 'hang.py'}:build"}) + "\n"
                       + "".join(json.dumps({"checkpoint": str(tmp_path / "runs" / m), "output_nodes": ["y"]}) + "\n"
                                 for m in models))
    with cluster.client() as client:
        before = {info["name"]: address for address, info in client.scheduler_info(n_workers=-1)["workers"].items()}
    result = convert_many(str(listing), "--dask", cluster.address, "--item-timeout", "60", "--dest",
                          str(tmp_path / "published"), "--json", cwd=tmp_path, home=workspace_home)
    assert result.returncode == 1, result.stderr[-3000:]
    rows = {row["model"]: row for row in json.loads(result.stdout)["items"]}
    assert {m: r["outcome"] for m, r in rows.items()} == {**{m: "published" for m in models}, "a-stuck": "failed"}
    assert rows["a-stuck"]["reason"] == ("no result within 60s (--item-timeout); the conversion hung or no worker "
                                         "was left to run it")
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 of 3 items failed")
    # Its task run is not left Running in the UI, and the worker that hung was restarted, not lost.
    with get_client(sync_client=True) as api:
        [stuck] = api.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["convert-a-stuck"])))
    assert stuck.state.is_failed() and "no result within 60s" in stuck.state.message
    cluster.wait_for_workers(["w-a", "w-b"])
    with cluster.client() as client:
        after = {info["name"]: address for address, info in client.scheduler_info(n_workers=-1)["workers"].items()}
    assert {"w-a", "w-b"} <= set(after)
    assert sum(before[name] != after[name] for name in ("w-a", "w-b")) == 1, (before, after)  # one new process
