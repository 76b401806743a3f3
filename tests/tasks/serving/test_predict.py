"""The predict client: splitting under a size limit, merging in order, retrying what a retry can fix, reading files."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Optional

import httpx
import pytest

from tasks.core.errors import ParameterError
from tasks.serving.predict import (
    PredictionError,
    is_vertex_url,
    predict_instances,
    read_instances,
    send_predict_request,
    split_requests,
)


@dataclass
class Endpoint:
    """A stand-in prediction endpoint on loopback: answers y = 0.5x + 1 per instance, after scripted failures."""

    url: str = ""
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (status, headers) to answer first
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.bodies.append(body)
            self.headers.append(headers)
            if self.failures:
                status, extra = self.failures.pop(0)
                return status, extra, json.dumps({"error": f"scripted {status}"}).encode()
        instances = json.loads(body)["instances"]
        return 200, {}, json.dumps({"predictions": [0.5 * i["inputs"] + 1.0 for i in instances]}).encode()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, extra, data = state.answer(body, dict(self.headers))
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **extra}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}/v1/models/linear"
    yield state
    server.shutdown()
    server.server_close()


def test_large_list_is_split_under_the_limit_and_merged_in_order(endpoint: Endpoint) -> None:
    instances = [{"inputs": float(i)} for i in range(500)]
    predictions = predict_instances(endpoint.url, instances, max_request_bytes=1000)
    assert predictions == [0.5 * i + 1.0 for i in range(500)]
    assert len(endpoint.bodies) == 9  # ~8.6 kB of instances
    assert all(len(body) <= 1000 for body in endpoint.bodies)
    assert all(len(body) > 1000 - len('{"inputs":499.0}') - 1 for body in endpoint.bodies[:-1])  # each one full
    sent = [i for body in endpoint.bodies for i in json.loads(body)["instances"]]
    assert sent == instances
    assert all("authorization" not in {k.lower() for k in h} for h in endpoint.headers)  # loopback: no token


def test_split_requests_fills_each_body_up_to_the_limit_exactly() -> None:
    bodies = split_requests([1.0] * 10, max_request_bytes=len(b'{"instances":[1.0,1.0,1.0]}'))
    assert [count for count, _ in bodies] == [3, 3, 3, 1]
    assert bodies[0][1] == b'{"instances":[1.0,1.0,1.0]}'
    named = split_requests([1], 100, signature_name="text")
    assert json.loads(named[0][1]) == {"signature_name": "text", "instances": [1]}


def test_an_instance_larger_than_the_limit_alone_is_refused_before_sending(endpoint: Endpoint) -> None:
    with pytest.raises(ParameterError, match="instance 1 alone is .* over the limit of 100 bytes"):
        predict_instances(endpoint.url, [{"inputs": 1.0}, {"inputs": "x" * 200}], max_request_bytes=100)
    assert endpoint.bodies == []


def test_429_and_5xx_are_retried_with_backoff_then_answered(endpoint: Endpoint) -> None:
    endpoint.failures = [(429, {"Retry-After": "0"}), (503, {}), (500, {})]
    assert predict_instances(endpoint.url, [{"inputs": 6.0}], backoff_seconds=0.01) == [4.0]
    assert len(endpoint.bodies) == 4
    assert len(set(endpoint.bodies)) == 1  # the same request each time


def test_backoff_grows_exponentially_and_honours_retry_after(endpoint: Endpoint) -> None:
    endpoint.failures = [(503, {}), (503, {}), (503, {}), (429, {"Retry-After": "7"})]
    slept: list[float] = []
    answer = send_predict_request(endpoint.url, b'{"instances":[{"inputs":6.0}]}', backoff_seconds=1.0,
                                  max_backoff_seconds=30.0, sleep=slept.append)
    assert answer == {"predictions": [4.0]}
    assert len(slept) == 4
    assert 0 <= slept[0] <= 1 and 0 <= slept[1] <= 2 and 0 <= slept[2] <= 4  # full jitter under 2^n
    assert slept[3] == 7.0


def test_retries_exhausted_raise_with_the_last_status_and_reason(endpoint: Endpoint) -> None:
    endpoint.failures = [(503, {})] * 3
    with pytest.raises(PredictionError, match=r"answered 503 after 3 attempt\(s\): scripted 503") as caught:
        predict_instances(endpoint.url, [{"inputs": 6.0}], max_attempts=3, backoff_seconds=0.01)
    assert caught.value.status == 503 and len(endpoint.bodies) == 3


def test_the_timeout_bounds_all_attempts_and_backoff_together(endpoint: Endpoint) -> None:
    import time

    endpoint.failures = [(503, {"Retry-After": "1"})] * 10
    started = time.monotonic()
    with pytest.raises(PredictionError, match=r"answered 503 after 2 attempt\(s\) and the 1.5 s timeout leaves no "
                                              r"time to retry: scripted 503") as caught:
        predict_instances(endpoint.url, [{"inputs": 6.0}], timeout=1.5, max_attempts=10)
    assert time.monotonic() - started < 1.5  # gave up when the next wait could not fit, without sleeping it
    assert caught.value.status == 503 and len(endpoint.bodies) == 2


def test_a_4xx_answer_is_not_retried(endpoint: Endpoint) -> None:
    endpoint.failures = [(400, {})]
    with pytest.raises(PredictionError, match="answered 400: scripted 400") as caught:
        predict_instances(endpoint.url, [{"inputs": 6.0}], backoff_seconds=0.01)
    assert caught.value.status == 400 and len(endpoint.bodies) == 1


def test_a_refused_connection_is_retried_then_reported(endpoint: Endpoint) -> None:
    from tasks.serving.server import free_loopback_port

    url = f"http://127.0.0.1:{free_loopback_port()}/v1/models/linear"
    with pytest.raises(PredictionError, match=r"failed after 2 attempt\(s\): ConnectError"):
        predict_instances(url, [{"inputs": 6.0}], max_attempts=2, backoff_seconds=0.01)


def test_predictions_missing_from_an_answer_are_an_error_not_a_short_list(endpoint: Endpoint) -> None:
    endpoint.answer = lambda body, headers: (200, {}, b'{"predictions": [1.0]}')  # type: ignore[method-assign]
    with pytest.raises(PredictionError, match="sent 2 instances and got 1 predictions"):
        predict_instances(endpoint.url, [{"inputs": 1.0}, {"inputs": 2.0}])


def test_the_local_server_answers_the_guide_through_the_client(tmp_path: Path, guide_checkpoint: Path) -> None:
    from tasks.tf.checkpoints import describe_checkpoint
    from tasks.tf.saved_models import export_saved_model
    from tasks.serving.server import open_server

    exported = export_saved_model(describe_checkpoint(guide_checkpoint, output_nodes=["y"]))
    with open_server(str(exported.artifact.path()), model_name="linear", port=0).start() as server:
        many = [{"inputs": float(x)} for x in range(300)]
        assert predict_instances(server.model_url, many, max_request_bytes=500) == [0.5 * x + 1.0 for x in range(300)]
        with pytest.raises(PredictionError, match="answered 400: instance 0 has unknown input 'x'"):
            predict_instances(server.model_url, [{"x": 6.0}])


VERTEX = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/123:predict"


@pytest.mark.parametrize("url, vertex", [
    (VERTEX, True),
    ("https://aiplatform.googleapis.com/v1/projects/p/locations/global/endpoints/1:predict", True),
    ("https://1234.us-central1-5678.prediction.vertexai.goog/v1/projects/p/locations/r/endpoints/1:predict", True),
    ("http://127.0.0.1:8501/v1/models/linear:predict", False),
    ("https://aiplatform.googleapis.com.evil.example/v1/x:predict", False),
    ("https://notaiplatform.googleapis.com/v1/x:predict", False),
])
def test_only_vertex_hosts_get_a_token(url: str, vertex: bool) -> None:
    assert is_vertex_url(url) is vertex


def test_a_vertex_url_sends_the_adc_token_and_never_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    from google.oauth2.credentials import Credentials

    seen: list[Optional[str]] = []

    def vertex(request: httpx.Request) -> httpx.Response:  # Vertex cannot be reached here: httpx answers for it
        seen.append(request.headers.get("authorization"))
        if len(seen) == 1:
            return httpx.Response(503, json={"error": {"code": 503, "message": "warming up"}})
        return httpx.Response(403, json={"error": {"code": 403, "message": "Permission denied on endpoint"}})

    caplog.set_level(logging.DEBUG)
    with httpx.Client(transport=httpx.MockTransport(vertex)) as client, pytest.raises(PredictionError) as caught:
        send_predict_request(VERTEX, b'{"instances":[1]}', credentials=Credentials(token="secret-token-123"),
                             client=client, backoff_seconds=0.01)
    assert seen == ["Bearer secret-token-123"] * 2
    assert "answered 403: Permission denied on endpoint" in str(caught.value)
    assert "secret-token-123" not in str(caught.value) and "secret-token-123" not in caplog.text
    assert "retrying" in caplog.text


def test_instances_are_read_from_json_json_lines_and_the_request_form(tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text('[{"inputs": 2.0}, {"inputs": 6.0}]')
    request = tmp_path / "request.json"
    request.write_text('{"instances": [{"inputs": 6.0}]}')
    lines = tmp_path / "many.jsonl"
    lines.write_text('{"inputs": 2.0}\n\n{"inputs": 4.0}\n')
    unlabelled_lines = tmp_path / "many.txt"
    unlabelled_lines.write_text("2.0\n4.0\n")
    assert read_instances(listed) == [{"inputs": 2.0}, {"inputs": 6.0}]
    assert read_instances(request) == [{"inputs": 6.0}]
    assert read_instances(lines) == [{"inputs": 2.0}, {"inputs": 4.0}]
    assert read_instances(unlabelled_lines) == [2.0, 4.0]


@pytest.mark.parametrize("text, says", [
    ("", "is not JSON"),
    ('{"inputs": 2.0}\nnot json\n', "line 2 is not JSON"),
    ('{"instances": []}', "non-empty list"),
    ('{"x": 1}', "non-empty list"),
])
def test_unreadable_instance_files_name_the_problem(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ParameterError, match=says):
        read_instances(path)


def test_predict_task_runs_in_a_flow(endpoint: Endpoint, prefect_api: None) -> None:
    from prefect import flow

    from tasks.stages.predict import predict

    @flow
    def online() -> list:
        return predict(endpoint.url, [{"inputs": 2.0}, {"inputs": 6.0}])

    assert online() == [2.0, 4.0]


def test_the_client_imports_neither_prefect_nor_tensorflow() -> None:
    import subprocess
    import sys

    code = "import sys, tasks.serving.predict; print([m for m in ('prefect', 'tensorflow') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"
