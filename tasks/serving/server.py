"""The local prediction server: a published model over HTTP with TF Serving's REST API, and the serving check.

Routes (TF Serving's, https://www.tensorflow.org/tfx/serving/api_rest)::

    GET  /v1/models/NAME[/versions/N]            version status
    GET  /v1/models/NAME[/versions/N]/metadata   signature_def map
    POST /v1/models/NAME[/versions/N]:predict    row ("instances") or columnar ("inputs") form

Errors are ``{"error": "..."}``: 400 for a bad request (malformed JSON, unknown input, wrong dtype or
shape, unknown signature or version), 404 for an unknown model, 413 past the body limit, 500 only for a
fault of the server itself. No request can stop the server.

Why a ``ThreadingHTTPServer`` and not an ASGI app under uvicorn: the work of a request is one blocking
TensorFlow call that releases the GIL, so an event loop would only hand it to a thread pool anyway;
threads keep the code synchronous (the house style), need no dependency, and start and stop
in-process on a free port for the serving check in a few milliseconds. ``benchmarks/serve.py``
measures what the HTTP layer costs against calling the model in-process.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import urlsplit

from tasks.core import layout
from tasks.core.errors import ParameterError
from tasks.core.records import CheckResult, ExportedModel
from tasks.serving.repository import LoadedVersion, ModelRepository
from tasks.serving.rest import (
    RequestError,
    encode,
    parse_json_body,
    parse_predict_request,
    response_body,
    signature_name_of,
)
from tasks.serving.sources import LocalVersionSource, open_model_source

log = logging.getLogger("freezeflow.serving")

DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_POLL_SECONDS = 2.0
DEFAULT_KEEP_VERSIONS = 2
_DISCARD_LIMIT = 256 * 1024 * 1024

_PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(predict|classify|regress)$", re.I)
_STATUS = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?$", re.I)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection across requests
    server_version = "freezeflow-serving"
    timeout = 60  # an idle or stalled connection gives its thread back after this many seconds
    # Headers and body go out in two writes; with Nagle's algorithm on, the second waits for the
    # client's delayed ACK of the first: 40 ms a request on Linux (measured by benchmarks/serve.py).
    disable_nagle_algorithm = True
    server: "_HTTPServer"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it (curl asks first for bodies over 1 KiB)."""
        if self._body_too_large() is not None:
            self._too_large()
            return False
        return super().handle_expect_100()

    def _dispatch(self) -> None:
        started = time.perf_counter()
        status, body = self._answer()
        self._send(status, body)
        log.debug("%s %s %d %.1f ms", self.command, self.path, status, (time.perf_counter() - started) * 1000)

    def _answer(self) -> tuple[int, dict[str, Any]]:
        try:
            return 200, self._route()
        except RequestError as exc:
            return exc.status, {"error": exc.message}
        except Exception as exc:  # a bug or a TensorFlow fault: answer 500, keep serving
            log.exception("internal error on %s %s", self.command, self.path)
            return 500, {"error": f"Internal error: {' '.join(str(exc).split()) or type(exc).__name__}"}

    def _route(self) -> dict[str, Any]:
        path = urlsplit(self.path).path
        repository = self.server.repository
        if self.command == "POST":
            match = _PREDICT.match(path)
            if not match:
                self._drain()
                raise RequestError(f"Malformed request: POST {path}", 404 if not path.startswith("/v1/") else 400)
            name, version, label, method = match.groups()
            body = self._read_body()
            self._check_model(name, label)
            if method.lower() != "predict":
                raise RequestError(f"{method} is not served here; send the same model a :predict request")
            return self._predict(repository.get(int(version) if version else None), body)
        match = _STATUS.match(path)
        if not match:
            raise RequestError(f"Malformed request: GET {path}", 404 if not path.startswith("/v1/") else 400)
        name, version, label, metadata = match.groups()
        self._check_model(name, label)
        number = int(version) if version else None
        return repository.metadata(number) if metadata else repository.status(number)

    def _check_model(self, name: str, label: Optional[str]) -> None:
        if name != self.server.repository.name:
            raise RequestError(f"Servable not found for request: Latest({name})", 404)
        if label is not None:
            raise RequestError("version labels are not served here; name the version: /versions/N")

    def _predict(self, loaded: LoadedVersion, raw: bytes) -> dict[str, Any]:
        body = parse_json_body(raw)
        signature = loaded.signature(signature_name_of(body))
        request = parse_predict_request(body, signature.spec)
        return response_body(loaded.predict(request.signature_name, request.inputs), request)

    def _body_too_large(self) -> Optional[int]:
        length = self.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body_bytes:
            return int(length)
        return None

    def _too_large(self) -> None:
        size = self._body_too_large()
        self.close_connection = True  # the unread body would otherwise be parsed as the next request
        self._send(413, {"error": f"request body of {size} bytes is larger than the limit of "
                                  f"{self.server.max_body_bytes} bytes; send fewer instances per request"})

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise RequestError("chunked request bodies are not accepted; send Content-Length", 411)
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise RequestError("Content-Length header missing or malformed", 411)
        if int(length) > self.server.max_body_bytes:
            self._discard(int(length))
            raise RequestError(f"request body of {length} bytes is larger than the limit of "
                               f"{self.server.max_body_bytes} bytes; send fewer instances per request", 413)
        return self.rfile.read(int(length))

    def _discard(self, length: int) -> None:
        """Read and drop an oversized body, so a client that sends it all before reading still gets the 413.

        Closing with the body unread would make the kernel reset the connection, and the client would
        see a broken pipe instead of the answer. Past _DISCARD_LIMIT the connection is closed anyway.
        """
        self.close_connection = True
        if length > _DISCARD_LIMIT:
            return
        left = length
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                return
            left -= len(chunk)

    def _drain(self) -> None:
        """Read (or refuse) the body of a request answered with an error, so keep-alive stays in step."""
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            try:
                self._read_body()
            except RequestError:
                pass

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = encode(body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client left; nothing to answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.debug("%s - %s", self.address_string(), format % args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog: 64 clients connecting at once overflow the default of 5, and the kernel then
    # drops SYNs that clients retry only after a second.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], repository: ModelRepository, max_body_bytes: int) -> None:
        self.repository = repository
        self.max_body_bytes = max_body_bytes
        super().__init__(address, _Handler)


class ModelServer:
    """A running server: ``url`` is its base URL; ``close`` stops serving and polling."""

    def __init__(self, repository: ModelRepository, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_body_bytes < 1:
            raise ParameterError(f"max_body_bytes must be 1 or more, got {max_body_bytes}")
        self.repository = repository
        try:
            self._http = _HTTPServer((host, port), repository, max_body_bytes)
        except OSError as exc:
            raise ParameterError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from exc
        self.host, self.port = self._http.server_address[:2]
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}"

    @property
    def model_url(self) -> str:
        return f"{self.url}/v1/models/{self.repository.name}"

    def serve_forever(self) -> None:
        self._http.serve_forever(poll_interval=0.2)

    def start(self) -> "ModelServer":
        """Serve from a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="serving", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._http.server_close()
        self.repository.stop_polling()

    def __enter__(self) -> "ModelServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_server(
    source: str,
    model_name: Optional[str] = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    keep_versions: int = DEFAULT_KEEP_VERSIONS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> ModelServer:
    """Load the newest versions under ``source`` and bind a server to them (call ``start`` or ``serve_forever``).

    ``source``: a version folder (saved_model.pb inside), a model folder of numeric versions, or
    ``gs://bucket/prefix/MODEL[/VERSION]``. The model folder is polled every ``poll_seconds``.
    """
    if poll_seconds <= 0:
        raise ParameterError(f"poll_seconds must be more than 0, got {poll_seconds}")
    repository = ModelRepository(open_model_source(source, model_name), keep_versions=keep_versions)
    repository.refresh()
    server = ModelServer(repository, host=host, port=port, max_body_bytes=max_body_bytes)
    repository.start_polling(poll_seconds)
    return server


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serving_check(exported: ExportedModel, reference_inputs: list, expected: list, tolerance: float) -> CheckResult:
    """Serve ``exported`` on a free loopback port, send the guide's request form, compare with ``expected``.

    The request is ``{"instances": [{INPUT_KEY: v}, …]}`` (plus ``signature_name`` when the signature is
    not ``serving_default``), what the guide sends to its deployed model. Every failure, from loading to
    a wrong answer, comes back as a failed check with the reason, so validation can collect it.
    """
    from tasks.core.tolerance import compare
    from tasks.serving.predict import predict_instances

    name = "serving"
    repository: Optional[ModelRepository] = None
    try:
        exported.artifact.verify()
        repository = ModelRepository(LocalVersionSource(exported.artifact.path(), "model", 1), keep_versions=1)
        repository.refresh()
        repository.get()  # raises with the load failure's reason when it did not load
    except Exception as exc:
        status = _load_failure(exc, repository)
        return CheckResult(name=name, passed=False, detail=f"the SavedModel does not load for serving: {status}")
    instances = [{exported.input_key: value} for value in reference_inputs]
    signature = None if exported.signature_key == layout.SIGNATURE_KEY else exported.signature_key
    with ModelServer(repository, host="127.0.0.1", port=0).start() as server:
        try:
            predictions = predict_instances(server.model_url, instances, signature_name=signature,
                                            max_attempts=1, timeout=60)
        except Exception as exc:
            return CheckResult(name=name, passed=False, detail=f"POST {server.model_url}:predict failed: {exc}")
    comparison = compare(predictions, expected, rtol=0.0, atol=tolerance)
    if not comparison.same_shape:
        return CheckResult(name=name, passed=False, detail=f"served predictions have shape "
                           f"{list(comparison.got_shape)}, expected {list(comparison.expected_shape)}")
    passed = comparison.passed
    return CheckResult(name=name, passed=passed, detail=(
        f"REST predict gave {_few(predictions)}" + ("" if passed else f", expected {_few(expected)}")
        + f"; max |difference| {comparison.max_abs_difference:.3g} ({comparison.tolerance_text()})"))


def _few(values: list) -> str:
    return str(values if len(values) <= 6 else values[:6] + ["…"])


def _load_failure(exc: Exception, repository: Optional[ModelRepository]) -> str:
    if repository is not None:
        errors = [s["status"]["error_message"] for s in repository.status()["model_version_status"]
                  if s["status"]["error_message"]]
        if errors:
            return errors[0]
    return " ".join(str(exc).split()) or type(exc).__name__
