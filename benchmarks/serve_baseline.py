"""The serving benchmark's baseline: ``freezeflow serve``'s previous HTTP layer, kept to be measured against.

Until the uvicorn rebuild (issue 13) ``tasks/serving.py`` served with the standard library's
``ThreadingHTTPServer``, a thread per connection; this is that handler as it was at commit 34ef87a,
over today's model repository and REST contract, so ``benchmarks/serve.py`` compares the two HTTP layers
in one run on the same machine. Nothing outside ``benchmarks/`` uses it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import urlsplit

from tasks.serving.repository import LoadedVersion, ModelRepository
from tasks.serving.rest import RequestError, encode, parse_json_body, parse_predict_request, response_body, signature_name_of
from tasks.serving.sources import open_model_source

log = logging.getLogger("freezeflow.serving.baseline")

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


class BaselineServer:
    """The old server on a port: ``start`` serves from a thread, ``close`` stops it."""

    def __init__(self, source: str, model_name: str, host: str = "127.0.0.1", port: int = 0,
                 max_body_bytes: int = 16 * 1024 * 1024) -> None:
        self.repository = ModelRepository(open_model_source(source, model_name), keep_versions=1)
        self.repository.refresh()
        self._http = _HTTPServer((host, port), self.repository, max_body_bytes)
        self.host, self.port = self._http.server_address[:2]
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "BaselineServer":
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join(timeout=10)
        self._http.server_close()

    def __enter__(self) -> "BaselineServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
