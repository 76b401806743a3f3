"""The `freeze` command as a user runs it: exit codes, what it prints, the file it leaves."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner


REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's model (y = 0.5 * x + 1.0) saved by tf.compat.v1.train.Saver."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    directory = tmp_path_factory.mktemp("checkpoint")
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        tf.identity(tf.compat.v1.Variable(0.5, name="m") * x + tf.compat.v1.Variable(1.0, name="b"), name="y")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(directory / "model"))
    return directory


@pytest.fixture
def app() -> typer.Typer:
    from freezeflow.cli.app import app

    return app


def invoke(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_freeze_writes_the_graph_and_prints_one_line(app: typer.Typer, checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "frozen.pb"
    result = invoke(app, "freeze", str(checkpoint / "model"), "--output-node", "y", "-o", str(output))
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert str(output) in lines[0] and "nodes" in lines[0] and "2 constants" in lines[0]
    assert f"{output.stat().st_size} bytes" in lines[0]


def test_freeze_accepts_a_directory_with_a_checkpoint_state_file(
    app: typer.Typer, checkpoint: Path, tmp_path: Path
) -> None:
    output = tmp_path / "frozen.pb"
    result = invoke(app, "freeze", str(checkpoint), "--output-node", "y", "--output-node", "y", "-o", str(output))
    assert result.exit_code == 0, result.output
    assert output.is_file()


def test_unknown_output_node_is_an_error_line(app: typer.Typer, checkpoint: Path, tmp_path: Path) -> None:
    result = invoke(app, "freeze", str(checkpoint / "model"), "--output-node", "yy", "-o", str(tmp_path / "frozen.pb"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: output node 'yy'")
    assert "nearest: y" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_max_bytes_guard(app: typer.Typer, checkpoint: Path, tmp_path: Path) -> None:
    args = ["freeze", str(checkpoint / "model"), "--output-node", "y", "-o", str(tmp_path / "frozen.pb")]
    result = invoke(app, *args, "--max-bytes", "64")
    assert result.exit_code == 1
    assert "2 GiB" in result.stderr and "SavedModel" in result.stderr
    assert not list(tmp_path.iterdir())
    assert invoke(app, *args, "--max-bytes", "0").exit_code == 2  # typer rejects it as a bad parameter


def test_missing_checkpoint_is_an_error_line(app: typer.Typer, tmp_path: Path) -> None:
    result = invoke(app, "freeze", str(tmp_path / "nothing"), "--output-node", "y", "-o", str(tmp_path / "frozen.pb"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: checkpoint index") and str(tmp_path / "nothing.index") in result.stderr


def test_output_node_is_required(app: typer.Typer, checkpoint: Path, tmp_path: Path) -> None:
    result = invoke(app, "freeze", str(checkpoint / "model"), "-o", str(tmp_path / "frozen.pb"))
    assert result.exit_code == 2
    assert "--output-node" in result.output


def test_command_module_imports_neither_prefect_nor_tensorflow() -> None:
    script = textwrap.dedent(
        """
        import sys
        import typer
        from typer.testing import CliRunner
        from freezeflow.cli.app import app
        assert CliRunner().invoke(app, ["freeze", "--help"]).exit_code == 0
        loaded = [name for name in sys.modules if name.split(".")[0] in ("prefect", "tensorflow")]
        assert not loaded, loaded
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
