"""``freezeflow convert-many`` refusing bad input: one line naming the SOURCE, line or address, exit 1,
within seconds, before Prefect or Dask start, and nothing published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.dask_cluster import free_port

REPO = Path(__file__).resolve().parents[3]


def convert_many(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "freezeflow", "convert-many", *args, "--dest", str(cwd / "dest")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def refused(result: subprocess.CompletedProcess, cwd: Path) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback, no Prefect log
    assert not (cwd / "dest").exists()
    assert not (cwd / ".freezeflow").exists()  # refused before the workspace (or Prefect) was touched
    return lines[0]


def test_missing_source(tmp_path: Path) -> None:
    line = refused(convert_many("no-such-folder", cwd=tmp_path), tmp_path)
    assert line == ("error: SOURCE no-such-folder does not exist; pass a folder of checkpoints, a gs:// prefix or "
                    "a JSON Lines file")


def test_source_without_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    (tmp_path / "runs" / "notes.txt").write_text("no checkpoints here")
    line = refused(convert_many("runs", cwd=tmp_path), tmp_path)
    assert line.startswith("error: SOURCE runs holds no checkpoint")


def test_malformed_json_lines_are_refused_by_line_number(guide_checkpoint: Path, tmp_path: Path) -> None:
    listing = tmp_path / "batch.jsonl"
    listing.write_text(json.dumps({"checkpoint": str(guide_checkpoint.parent), "output_nodes": ["y"]}) + "\n"
                       + json.dumps({"checkpoint": str(guide_checkpoint.parent), "model_name": "b"}) + "\n"
                       + '{"checkpoint": "c" "model_name": "c"}\n')
    line = refused(convert_many(str(listing), cwd=tmp_path), tmp_path)
    assert line.startswith(f"error: SOURCE {listing} line 3 is not JSON (Expecting ',' delimiter")


def test_unreachable_scheduler_is_named_within_30_seconds(guide_checkpoint: Path, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    line = refused(convert_many(str(guide_checkpoint.parent), "--output-node", "y", "--dask", address, cwd=tmp_path),
                   tmp_path)
    assert time.monotonic() - started < 30
    assert line.startswith(f"error: cannot reach the Dask scheduler at {address} (")
    assert "start one with `dask scheduler` or fix --dask / FREEZEFLOW_DASK_ADDRESS" in line


def test_scheduler_address_from_the_environment(guide_checkpoint: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    env.update({"PYTHONPATH": str(REPO), "FREEZEFLOW_DASK_ADDRESS": address})
    result = subprocess.run([sys.executable, "-m", "freezeflow", "convert-many", str(guide_checkpoint.parent),
                             "--dest", str(tmp_path / "dest")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert refused(result, tmp_path).startswith(f"error: cannot reach the Dask scheduler at {address} (")


def test_a_malformed_address_is_refused(guide_checkpoint: Path, tmp_path: Path) -> None:
    line = refused(convert_many(str(guide_checkpoint.parent), "--dask", "http://sched:8786", cwd=tmp_path), tmp_path)
    assert line == "error: Dask scheduler address 'http://sched:8786': use tcp://host:port (or tls://host:port)"
