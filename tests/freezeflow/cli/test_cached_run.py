"""``freezeflow run`` and ``convert`` when every stage is cached: the summary a Prefect run prints, read from the
cache without importing Prefect or TensorFlow; ``--record``, ``--no-cache`` and a stale artifact go through Prefect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freezeflow.cli.pipeline import NOT_RECORDED
from tests.support.cli import ALL_CACHED, HEAVY, run_freezeflow, run_importtime
from tests.support.task_runs import final_task_states


def flow_run_ids() -> list[Any]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [run.id for run in client.read_flow_runs(limit=200)]


def test_a_cached_run_is_read_from_the_cache_unless_recorded_and_a_stale_stage_is_rebuilt(
    tmp_path: Path, api_env: dict[str, str], workspace_home: Path
) -> None:
    args = ("run", "--epochs", "120", "--dest", str(tmp_path / "published"))
    first = run_freezeflow(*args, cwd=tmp_path, env=api_env, timeout=600)
    assert first.code == 0, first.stderr[-3000:]
    assert NOT_RECORDED not in first.stdout

    # --record: through Prefect anyway, a flow run in the API whose every stage is Cached.
    before = flow_run_ids()
    recorded = run_freezeflow(*args, "--record", cwd=tmp_path, env=api_env, timeout=600)
    assert recorded.code == 0, recorded.stderr[-3000:]
    assert recorded.stdout.splitlines()[-1] == ALL_CACHED
    new = [run for run in flow_run_ids() if run not in before]
    assert len(new) == 1
    assert set(final_task_states(new[0], 6).values()) == {"Cached"}

    # The fast path: the same lines, one more saying nothing was recorded, and neither Prefect nor TF imported.
    fast, imported = run_importtime(*args, cwd=tmp_path, env=api_env)
    assert fast.returncode == 0, fast.stderr[-3000:]
    assert fast.stdout == recorded.stdout + NOT_RECORDED + "\n"
    assert [name for name in HEAVY if name in imported] == [] and "freezeflow" in imported
    assert [run for run in flow_run_ids() if run not in before] == new

    # A frozen graph changed behind the cache's back: a real run that rebuilds that stage.
    frozen = next((workspace_home / "work" / "freeze").rglob("frozen_graph.pb"))
    frozen.write_bytes(frozen.read_bytes() + b"\0")
    rebuilt = run_freezeflow(*args, cwd=tmp_path, env=api_env, timeout=600)
    assert rebuilt.code == 0, rebuilt.stderr[-3000:]
    assert NOT_RECORDED not in rebuilt.stdout
    assert rebuilt.stdout.splitlines()[-1] == ALL_CACHED.replace("freeze Cached", "freeze Completed")

    # --no-cache: every stage runs again, through Prefect.
    again = run_freezeflow(*args, "--no-cache", cwd=tmp_path, env=api_env, timeout=600)
    assert again.code == 0, again.stderr[-3000:]
    assert NOT_RECORDED not in again.stdout
    assert again.stdout.splitlines()[-1] == ALL_CACHED.replace("Cached", "Completed")


def test_a_cached_convert_is_read_from_the_cache(guide_checkpoint: Path, tmp_path: Path, api_env: dict) -> None:
    args = ("convert", str(guide_checkpoint), "--output-node", "y", "--dest", str(tmp_path / "d"))
    first = run_freezeflow(*args, cwd=tmp_path, env=api_env, timeout=600)
    assert first.code == 0, first.stderr[-3000:]
    fast, imported = run_importtime(*args, cwd=tmp_path, env=api_env)
    assert fast.returncode == 0, fast.stderr[-3000:]
    assert fast.stdout.splitlines()[:-2] == first.stdout.splitlines()[:-1]  # where, what, and the validation
    assert fast.stdout.splitlines()[-2:] == [
        "  stages: sanitise Cached, freeze Cached, export Cached, validate Cached, upload Cached", NOT_RECORDED]
    assert [name for name in HEAVY if name in imported] == []
