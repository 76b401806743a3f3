"""``--workspace`` on run, convert and smoke: a workspace that cannot be used is one line naming it, in
seconds, before Prefect or TensorFlow start."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.gcs_support import Emulator
from tests.support.cli import run_freezeflow


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [["run"], ["smoke"]])
def test_an_unreachable_workspace_is_one_line_within_30_seconds(tmp_path: Path, command: list[str]) -> None:
    outcome = run_freezeflow(*command, "--workspace", "gs://team-bucket/ws", cwd=tmp_path,
                             env={"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{closed_port()}"})
    assert outcome.code != 0 and outcome.seconds < 30
    assert outcome.error_lines and outcome.error_lines[0].startswith("error: workspace gs://team-bucket/ws: ")
    assert "127.0.0.1" in outcome.error_lines[0] and "Traceback" not in outcome.stderr
    assert len([line for line in outcome.stderr.splitlines() if line.strip()]) == 1


def test_a_missing_bucket_and_an_unknown_scheme_are_named(tmp_path: Path) -> None:
    emulator = Emulator(tmp_path / "gcs").start()
    try:
        outcome = run_freezeflow("run", "--workspace", "gs://no-such-bucket/ws", cwd=tmp_path,
                                 env={"STORAGE_EMULATOR_HOST": emulator.url})
    finally:
        emulator.stop()
    assert outcome.code != 0 and outcome.error_lines == [
        "error: workspace gs://no-such-bucket/ws: bucket no-such-bucket does not exist; create it or point "
        "FREEZEFLOW_WORKSPACE (--workspace) at an existing bucket"]
    outcome = run_freezeflow("run", "--workspace", "s3://bucket/ws", cwd=tmp_path)
    assert outcome.code != 0 and outcome.error_lines == [
        "error: workspace 's3://bucket/ws': only local folders and gs://bucket/prefix are supported"]


def test_unreachable_redis_locks_are_one_line_not_a_hang(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    outcome = run_freezeflow("run", "--workspace", str(tmp_path / "ws"), cwd=tmp_path, env={"FREEZEFLOW_LOCKS": url})
    assert outcome.code != 0 and outcome.seconds < 30
    assert len(outcome.error_lines) == 1 and outcome.error_lines[0].startswith(f"error: locks at {url}: Redis does not "
                                                                              "answer (")
    assert outcome.error_lines[0].endswith("start it, or unset FREEZEFLOW_LOCKS to run without locks")
