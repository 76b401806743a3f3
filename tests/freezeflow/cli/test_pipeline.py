"""``freezeflow run``/``convert``'s summary: the lines scripts read, printed from the flow's RunSummary."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from freezeflow.cli.pipeline import print_summary
from tasks.core.records import RunSummary
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
