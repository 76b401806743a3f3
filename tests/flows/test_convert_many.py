"""convert_many on a real Dask cluster on loopback (``dask scheduler`` and ``dask worker`` processes with a bare
environment) reporting to a real Prefect API: a sweep of TF1 checkpoints with one corrupt and one
missing, a re-run, and a worker killed mid-batch."""

from __future__ import annotations

import json
import os
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
