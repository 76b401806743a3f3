"""``freezeflow run`` and ``convert``: the summary lines scripts read, the choices refused up front, real runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from freezeflow.cli.pipeline import print_summary
from tasks.core.records import RunSummary
from tests.support.cli import freezeflow
from tests.support.records import run_summary


def printed(summary: RunSummary) -> str:
    app = typer.Typer()
    app.command()(lambda: print_summary(summary))
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_local_publication_prints_the_five_lines_scripts_read() -> None:
    assert printed(run_summary()) == (
        "published linear v1 at /tmp/published/linear/1\n"
        "  frozen graph: /tmp/published/linear/1/frozen_graph.pb\n"
        "  SavedModel:   /tmp/published/linear/1 (tag serve, signature serving_default)\n"
        "  prediction at x=6.0: checkpoint 4, frozen graph 4, SavedModel 4\n"
        "  stages: train Completed, checkpoint Completed, freeze Completed, export Completed, validate Completed, "
        "upload Completed\n")


def test_a_reused_gs_version_says_so_and_names_cached_stages() -> None:
    out = printed(run_summary(uri="gs://bucket/models/linear/3", reused=True,
                              states={"train": "Cached", "checkpoint": "Cached"}))
    assert out.splitlines()[:2] == ["already published as linear v3 at gs://bucket/models/linear/3",
                                    "  frozen graph: gs://bucket/models/linear/3/frozen_graph.pb"]
    assert out.splitlines()[-1] == ("  stages: train Cached, checkpoint Cached, freeze Completed, export Completed, "
                                    "validate Completed, upload Completed")


def test_the_prediction_line_takes_the_last_input_when_six_is_not_among_them() -> None:
    out = printed(run_summary(reference_inputs=[["a"], ["b"]],
                              predictions={"checkpoint": ["x", "y"], "frozen_graph": ["x", "y"], "saved_model": ["x", "y"]}))
    assert '  prediction at x=["b"]: checkpoint y, frozen graph y, SavedModel y\n' in out


def _invoke(*args: str) -> "object":
    from freezeflow.cli.app import app

    return CliRunner().invoke(app, list(args))


def test_a_format_or_engine_outside_the_flows_literals_is_refused_before_anything_runs() -> None:
    result = _invoke("run", "--format", "tf3")
    assert result.exit_code == 2 and "must be tf1 or tf2" in result.output
    result = _invoke("convert", "ckpt/model", "--engine", "fast")
    assert result.exit_code == 2 and "must be stream or tf" in result.output


def test_bad_choices_are_refused_without_importing_prefect_or_tensorflow() -> None:
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from freezeflow.cli.app import app; "
            "r = CliRunner().invoke(app, ['convert', 'ckpt/model', '--engine', 'fast']); "
            "print(r.exit_code, [m for m in ('prefect', 'tensorflow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2 []"


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
