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
    # No reference inputs given: a batch generated from the input signature, the default tolerances.
    assert "validated on a generated batch (seed 0): largest difference 0 (rtol 0.0001, atol 1e-05)" in result.stdout


def test_convert_takes_reference_inputs_from_a_file_and_tolerances(
    guide_checkpoint: Path, tmp_path: Path, api_env: dict
) -> None:
    import json

    import numpy as np

    batch = tmp_path / "batch.npy"
    np.save(batch, np.array([2.0, 4.0, 6.0], dtype=np.float32))
    result = freezeflow("convert", str(guide_checkpoint), "--output-node", "y", "--dest", str(tmp_path / "d"),
                        "--reference-inputs", str(batch), "--rtol", "0", "--atol", "1e-7", cwd=tmp_path, env=api_env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "prediction at x=6.0: checkpoint 4, frozen graph 4, SavedModel 4" not in result.stdout
    assert "validated on the batch in" in result.stdout and "(rtol 0, atol 1e-07)" in result.stdout
    manifest = json.loads((tmp_path / "d" / "model" / "1" / "manifest.json").read_text())
    assert manifest["validation"]["rtol"] == 0 and manifest["validation"]["atol"] == 1e-7
    assert manifest["validation"]["predictions"]["frozen_graph"] == [2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output-node", "nope"], "error: output node 'nope' is not in the graph of"),
        (["--output-node", "y", "--model-name", "Bad Name"], "error: model_name 'Bad Name' must be 1-63 lowercase letters"),
        (["--output-node", "y", "--reference-input", "[1, 2]"], "error: reference_inputs: each instance has shape [2]"),
        (["--output-node", "y", "--reference-inputs", "nothing.npy"], "error: --reference-inputs /"),
        (["--output-node", "y", "--reference-inputs", "batch.csv"], "error: --reference-inputs batch.csv: expected a"),
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


def test_an_error_line_is_capped_but_keeps_the_files_it_names() -> None:
    from freezeflow.cli.common import MAX_ERROR_LINE, one_line

    report = "/tmp/freezeflow/work/validate/0123456789abcdef/report.md"
    long = ("error: validation failed: frozen graph differs from checkpoint by 0.2 at [1, 7] "
            + "(" + ", ".join(f"{i / 7:.6f}" for i in range(2000)) + f"); report {report}")
    line = one_line(long)
    assert "\n" not in line and len(line) <= MAX_ERROR_LINE and line.endswith(f"… (see {report})")
    assert line.startswith("error: validation failed: frozen graph differs from checkpoint by 0.2 at [1, 7]")
    short = "error: checkpoint /a/model: missing"
    assert one_line(short) == short


@pytest.mark.slow
def test_convert_makes_a_training_checkpoint_servable(tmp_path: Path, api_env: dict) -> None:
    """A residual network saved from its training graph (batch norm and dropout in training mode, Adam,
    summaries) converts with default settings; every rewrite is listed; the published model answers
    like the same weights built for inference."""
    import json

    import numpy as np

    from tests.support import real_models

    training = real_models.save_real_model("resnet", tmp_path / "train", training=True, optimizer=True,
                                           summaries=True)
    inference = real_models.save_real_model("resnet", tmp_path / "infer")
    result = freezeflow("convert", str(training.prefix.parent), "--output-node", "probs", "--fold-batch-norm",
                        "--dest", str(tmp_path / "d"), cwd=tmp_path, env=api_env)
    assert result.returncode == 0, result.stderr[-2000:]
    rewrites = [line for line in result.stdout.splitlines() if line.startswith("  rewrite: ")]
    assert sum("now normalises with its moving statistics" in line for line in rewrites) == 6
    assert sum(" folded into " in line for line in rewrites) == 6
    assert any("optimiser pruned" in line for line in rewrites) and any("dropout" in line for line in rewrites)
    manifest = json.loads((tmp_path / "d" / "model" / "1" / "manifest.json").read_text())
    assert manifest["validation"]["passed"] and len(manifest["validation"]["rewrites"]) == len(rewrites)
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef.FromString((tmp_path / "d" / "model" / "1" / "frozen_graph.pb").read_bytes())
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        tf.import_graph_def(graph_def, name="")
        served = session.run("probs:0", {"x:0": training.sample})
    expected = real_models.tf_unfrozen(inference, training.sample)
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-5)
