"""A failure inside a flow reads as one line (issue 17): the `error:` line and where the full log is. Prefect's
tracebacks go to that log (and the Prefect UI); `--verbose` shows them as the run goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_freezeflow


@pytest.fixture
def api_env(prefect_api: None, workspace_home: Path) -> dict[str, str]:
    """A CLI process pointed at the session's Prefect API (no server of its own to start) and this test's home."""
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "FREEZEFLOW_HOME": str(workspace_home)}


@pytest.mark.slow
def test_a_failing_flow_prints_one_error_line_and_where_the_log_is(guide_checkpoint: Path, tmp_path: Path,
                                                                  api_env: dict[str, str]) -> None:
    outcome = run_freezeflow("convert", str(guide_checkpoint), "--output-node", "zz", "--dest", "pub",
                             cwd=tmp_path, env=api_env, timeout=300)

    assert outcome.code == 1
    lines = outcome.stderr.splitlines()
    assert len(lines) == 2, outcome.stderr
    assert lines[0].startswith("error: output node 'zz' is not in the")
    assert lines[1].startswith("  full log: ")
    log = Path(lines[1].removeprefix("  full log: "))
    assert log.parent == Path(api_env["FREEZEFLOW_HOME"]) / "logs"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "OutputNodeError" in text
    assert not (tmp_path / "pub").exists()


@pytest.mark.slow
def test_verbose_keeps_prefects_tracebacks_on_stderr(guide_checkpoint: Path, tmp_path: Path,
                                                     api_env: dict[str, str]) -> None:
    outcome = run_freezeflow("convert", str(guide_checkpoint), "--output-node", "zz", "--dest", "pub",
                             "--verbose", cwd=tmp_path, env=api_env, timeout=300)

    assert outcome.code == 1
    assert "Traceback (most recent call last)" in outcome.stderr
    assert outcome.stderr.splitlines()[-1].startswith("error: output node 'zz' is not in the")
    assert not (Path(api_env["FREEZEFLOW_HOME"]) / "logs").exists()
