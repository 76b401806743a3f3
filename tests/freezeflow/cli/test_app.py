"""The freezeflow command as users meet it: exit codes, one-line reasons, and what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
REPO = Path(__file__).resolve().parents[3]


def freezeflow(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed console script in a fresh process, as a user runs it."""
    exe = Path(sys.executable).with_name("freezeflow")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    environment.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", **(env or {})})
    return subprocess.run([str(exe), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


def test_cli_module_imports_neither_prefect_nor_tensorflow() -> None:
    code = "import sys, freezeflow.cli.app; bad = [m for m in ('prefect', 'tensorflow') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_run_twice_publishes_once_and_second_run_is_all_cached(tmp_path: Path) -> None:
    # Prefect's temporary server, as CI runs it; the local server that stays up has its own tests.
    first = freezeflow("run", cwd=tmp_path, env={"FREEZEFLOW_SERVER": "ephemeral"})
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"published linear v1 at {tmp_path}/published/linear/1" in first.stdout
    assert "prediction at x=6.0: checkpoint 4, frozen graph 4, SavedModel 4" in first.stdout
    assert (tmp_path / ".freezeflow" / "prefect").is_dir()  # the embedded server's SQLite lives here
    second = freezeflow("run", cwd=tmp_path, env={"FREEZEFLOW_SERVER": "ephemeral"})
    assert second.returncode == 0, second.stderr[-2000:]
    assert ("stages: train Cached, checkpoint Cached, freeze Cached, export Cached, validate Cached, "
            "upload Cached") in second.stdout
    assert sorted(p.name for p in (tmp_path / "published" / "linear").iterdir()) == ["1"]


@pytest.fixture
def api_env(prefect_api: None, workspace_home: Path) -> dict[str, str]:
    """Point a CLI process at the session's Prefect API (no embedded server to start) and this test's home."""
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "FREEZEFLOW_HOME": str(workspace_home)}


def test_convert_prints_where_and_what(guide_checkpoint: Path, tmp_path: Path, api_env: dict) -> None:
    result = freezeflow("convert", str(guide_checkpoint), "--output-node", "y", "--dest", str(tmp_path / "d"),
                        cwd=tmp_path, env=api_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"published model v1 at {tmp_path / 'd' / 'model' / '1'}" in result.stdout
    assert "prediction at x=6.0: checkpoint 4, frozen graph 4, SavedModel 4" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output-node", "nope"], "error: output node 'nope' is not in the graph of"),
        (["--output-node", "y", "--model-name", "Bad Name"], "error: model_name 'Bad Name' must be 1-63 lowercase letters"),
        (["--output-node", "y", "--reference-input", "[1, 2]"], "error: reference_inputs: each instance has shape [2]"),
    ],
)
def test_convert_fails_with_one_line_reason(
    guide_checkpoint: Path, tmp_path: Path, api_env: dict, args: list, message: str
) -> None:
    result = freezeflow("convert", str(guide_checkpoint), "--dest", str(tmp_path / "d"), *args, cwd=tmp_path,
                        env=api_env)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr[-1500:]
    assert not (tmp_path / "d").exists()


def test_inspect_shows_variables_inputs_and_candidate_outputs(guide_checkpoint: Path, tmp_path: Path) -> None:
    result = freezeflow("inspect", str(guide_checkpoint.parent), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "format: tf1" in result.stdout
    assert "inputs: x" in result.stdout and "output candidates: y" in result.stdout
    assert "m  float32  []" in result.stdout and "b  float32  []" in result.stdout


def test_inspect_frozen_graph_and_saved_model(guide_records: dict, tmp_path: Path) -> None:
    frozen = freezeflow("inspect", str(guide_records["frozen"].graph_path), cwd=tmp_path)
    assert frozen.returncode == 0 and "frozen graph:" in frozen.stdout and "output candidates: y" in frozen.stdout
    saved = freezeflow("inspect", str(guide_records["exported"].artifact.path()), cwd=tmp_path)
    assert saved.returncode == 0
    assert "signature serving_default: inputs inputs float32 [None] -> outputs outputs float32 [None]" in saved.stdout


def test_inspect_of_nothing_fails_with_one_line(tmp_path: Path) -> None:
    result = freezeflow("inspect", str(tmp_path / "nothing"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: checkpoint prefix") and "\n" not in result.stderr.strip()


def test_ls_lists_only_complete_versions(tmp_path: Path) -> None:
    from tasks.storage.local import LocalDestination
    from tests.tasks.storage.test_local import _files  # the same small fake model files

    LocalDestination(tmp_path / "d").publish("linear", _files(tmp_path / "src"), {})
    (tmp_path / "d" / "linear" / "2").mkdir()
    result = freezeflow("ls", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 0
    assert [line.split("\t")[:2] for line in result.stdout.splitlines()] == [["linear", "1"]]
