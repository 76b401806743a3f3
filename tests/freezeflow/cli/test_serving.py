"""``freezeflow serve``, ``predict``, ``deploy`` and ``undeploy`` as users meet them: output, exit codes, one-line reasons."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import typer
from typer.testing import CliRunner


REPO = Path(__file__).resolve().parents[3]
# The real freezeflow app, as the console script runs it.
LAUNCH = "from freezeflow.cli.app import app; app(prog_name='freezeflow')"


@pytest.fixture
def app() -> typer.Typer:
    from freezeflow.cli.app import app

    return app


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's model published by the pipeline's own stages: DEST/linear/1 with its manifest; returns DEST."""
    from tests.guide import write_guide_checkpoint

    from tasks.tf.checkpoints import describe_checkpoint
    from tasks.tf.saved_models import export_saved_model
    from tasks.tf.freezing import write_frozen_graph
    from tasks.storage.publishing import upload_model
    from tasks.tf.validation import validate_model

    root = tmp_path_factory.mktemp("published")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FREEZEFLOW_HOME", str(root / "home"))
        checkpoint = describe_checkpoint(write_guide_checkpoint(root / "ckpt"), output_nodes=["y"])
        frozen, exported = write_frozen_graph(checkpoint), export_saved_model(checkpoint)
        report = validate_model(checkpoint, frozen, exported, [2.0, 4.0, 6.0])
        upload_model(str(root / "dest"), "linear", checkpoint.interface, frozen, exported, report, {})
    assert (root / "dest" / "linear" / "1" / "manifest.json").is_file()
    return root / "dest"


@pytest.fixture
def server(published: Path) -> Iterator[Any]:
    from tasks.serving.server import open_server

    with open_server(str(published / "linear"), port=0).start() as running:
        yield running


def freezeflow(*args: str, cwd: Path, **options: Any) -> Any:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    environment.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO)})
    return subprocess.Popen([sys.executable, "-c", LAUNCH, *args], cwd=cwd, env=environment, text=True, **options)


def test_serving_cli_module_imports_neither_prefect_nor_tensorflow() -> None:
    code = ("import sys, freezeflow.cli.app; "
            "print([x for x in ('prefect', 'tensorflow', 'google.cloud.aiplatform_v1') if x in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("options", [[], ["--batching"]])
def test_serve_and_predict_end_to_end_in_real_processes(published: Path, tmp_path: Path, options: list[str]) -> None:
    serving = freezeflow("serve", str(published / "linear"), "--port", "0", *options, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = [serving.stdout.readline() for _ in range(2)]  # blocks until the model is loaded and listening
        assert lines[0].startswith("serving linear (versions 1) from "), lines + [serving.stderr.read()]
        url = lines[1].strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1/models/linear:predict")
        predict = freezeflow("predict", url, "--instance", '{"inputs": 6.0}', cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = predict.communicate(timeout=300)
        assert predict.returncode == 0, err
        assert json.loads(out) == {"predictions": [4.0]}
    finally:
        serving.send_signal(signal.SIGTERM)
        _, err = serving.communicate(timeout=60)
    assert serving.returncode == 0
    assert err.rstrip().endswith("stopped")


def test_predict_prints_the_guide_answer(app: typer.Typer, server: Any) -> None:
    result = CliRunner().invoke(app, ["predict", server.model_url, "-i", '{"inputs": 6.0}', "-i", '{"inputs": 2.0}'])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"predictions": [4.0, 2.0]}


def test_predict_reads_json_lines_and_splits_large_lists(app: typer.Typer, server: Any, tmp_path: Path) -> None:
    path = tmp_path / "instances.jsonl"
    path.write_text("".join(json.dumps({"inputs": float(x)}) + "\n" for x in range(200)))
    result = CliRunner().invoke(app, ["predict", f"{server.model_url}/versions/1", "-f", str(path),
                                      "--max-request-bytes", "300"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["predictions"] == [0.5 * x + 1.0 for x in range(200)]


def test_predict_refused_by_the_server_exits_1_with_its_reason(app: typer.Typer, server: Any) -> None:
    result = CliRunner().invoke(app, ["predict", server.model_url, "-i", '{"x": 6.0}'])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {server.model_url}:predict answered 400: instance 0 has unknown input 'x'; "
        "signature 'serving_default' takes 'inputs'"]


@pytest.mark.parametrize("args, says", [
    (["predict", "http://127.0.0.1:1/v1/models/m"], "give instances with either --file or --instance"),
    (["predict", "http://127.0.0.1:1/v1/models/m", "-i", "{nope"], "not JSON"),
    (["undeploy"], "give either a RECORD or --expired"),
])
def test_missing_or_malformed_arguments_are_usage_errors(app: typer.Typer, args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert says in " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())  # typer draws the usage error in a box


@pytest.mark.parametrize("args, says", [
    (["serve", "no/such/folder"], "error: no/such/folder: no such folder; pass a version folder"),
    (["predict", "ftp://host/v1/models/m", "-i", "1"], "error: endpoint 'ftp://host/v1/models/m' must be an http(s) URL"),
    (["deploy", "/models/linear/1", "--project", "demo-project"],
     "error: '/models/linear/1' is not a published version: expected gs://bucket/prefix/MODEL/VERSION"),
    (["deploy", "gs://b/m/linear/1", "--project", "Bad_Project"], "error: parameter project: String should match pattern"),
    (["undeploy", "--expired"], "error: undeploy --expired needs a project (--project)"),
])
def test_failures_exit_1_with_one_line(app: typer.Typer, args: list[str], says: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(says), result.stderr


def test_serve_of_a_version_that_cannot_load_exits_1_with_the_reason(app: typer.Typer, tmp_path: Path) -> None:
    folder = tmp_path / "linear" / "1"
    folder.mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"not a protobuf")
    result = CliRunner().invoke(app, ["serve", str(folder), "--port", "0"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(f"error: {folder}: no version could be loaded: Error parsing")
    assert "linear: version 1 failed to load" in result.stderr  # the log line before it


def test_undeploy_reads_back_the_record_deploy_writes(app: typer.Typer, tmp_path: Path) -> None:
    record = tmp_path / "vertex-deployment.json"
    record.write_text('{"project": "demo-project"}')
    result = CliRunner().invoke(app, ["undeploy", str(record)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {record}: Field required")


@pytest.mark.parametrize("args, says", [
    (["--host", "0.0.0.0"], "error: --host 0.0.0.0 serves other machines: give --token-file FILE (clients then send "
                            "'Authorization: Bearer <token>'), or serve on 127.0.0.1"),
    (["--model-name", "a/b"], "error: --model-name 'a/b' cannot be served: no URL /v1/models/NAME reaches a name"),
    (["--max-batch-size", "8"], "error: --max-batch-size, --batch-timeout-micros and --max-enqueued-batches tune "
                                "--batching; add --batching"),
    (["--max-enqueued-batches", "4"], "error: --max-batch-size, --batch-timeout-micros and --max-enqueued-batches "
                                      "tune --batching; add --batching"),
    (["--token-file", "no-such-token"], "error: --token-file no-such-token: cannot read it (No such file or directory)"),
])
def test_serve_refusals_come_in_one_line_before_any_model_loads(
    app: typer.Typer, published: Path, args: list[str], says: str
) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(app, ["serve", str(published / "linear"), "--port", "0", *args])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(says), result.stderr
    assert time.monotonic() - started < 5


def test_a_served_token_stays_out_of_logs_errors_and_the_process_list(published: Path, tmp_path: Path) -> None:
    token = "tok-" + os.urandom(12).hex()
    token_file = tmp_path / "serving.token"
    token_file.write_text(token + "\n")
    serving = freezeflow("serve", str(published / "linear"), "--host", "0.0.0.0", "--port", "0", "--token-file",
                         str(token_file), "--verbose", cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: list[str] = []
    try:
        lines = [serving.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("serving linear"), lines + [serving.stderr.read()]
        port = re.search(r":(\d+)/v1/models/linear:predict", lines[1]).group(1)
        url = f"http://127.0.0.1:{port}/v1/models/linear"
        seen.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout)
        with httpx.Client(timeout=30) as client:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                refused = client.post(f"{url}:predict", json={"instances": [6.0]}, headers=headers)
                assert refused.status_code == 401 and "Unauthorized" in refused.json()["error"]
                seen.append(refused.text + str(refused.headers))
        ok = freezeflow("predict", url, "-i", '{"inputs": 6.0}', "--token-file", str(token_file), cwd=tmp_path,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = ok.communicate(timeout=300)
        assert ok.returncode == 0 and json.loads(out) == {"predictions": [4.0]}, err
        denied = freezeflow("predict", url, "-i", '{"inputs": 6.0}', cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        denied_out, denied_err = denied.communicate(timeout=300)
        assert denied.returncode == 1 and "answered 401: Unauthorized" in denied_err
        seen += [out, err, denied_out, denied_err]
    finally:
        serving.send_signal(signal.SIGTERM)
        serve_out, serve_err = serving.communicate(timeout=60)
    seen += lines + [serve_out, serve_err]
    assert "POST /v1/models/linear:predict 401" in serve_err  # --verbose logged the requests
    assert "POST /v1/models/linear:predict 200" in serve_err
    assert all(token not in text for text in seen)
    assert not any(token in path.read_text(errors="replace") for path in tmp_path.rglob("*")
                   if path.is_file() and path != token_file)


def test_predict_against_a_server_that_never_answers_stops_at_the_timeout(app: typer.Typer) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts connections; nobody answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1/models/linear"
        started = time.monotonic()
        result = CliRunner().invoke(app, ["predict", url, "-i", '{"inputs": 6.0}', "--timeout", "1.5"])
        took = time.monotonic() - started
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: POST {url}:predict: no answer within the 1.5 s timeout (ReadTimeout: timed out, after 1 attempt(s)); "
        "check that the server is up and answering, or give a longer --timeout"]
    assert took < 5


def test_predict_help_states_that_the_default_timeout_bounds_the_whole_command(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["predict", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stdout).split())
    assert "--timeout" in text
    assert "Seconds the whole command may wait for answers, every request and retry included" in text
    assert "[default: 60.0" in text
