"""The local prediction server: a published model over HTTP with TF Serving's REST API, and the serving check.

Routes (TF Serving's, https://www.tensorflow.org/tfx/serving/api_rest)::

    GET  /v1/models/NAME[/versions/N]            version status
    GET  /v1/models/NAME[/versions/N]/metadata   signature_def map
    POST /v1/models/NAME[/versions/N]:predict    row ("instances") or columnar ("inputs") form

Errors are ``{"error": "..."}``, as TF Serving maps its status codes: 400 for a bad request (malformed
JSON, unknown input, wrong dtype or shape, unknown signature, a method other than GET and POST), 404 for
a model or version it does not have (NOT_FOUND), 401 without the bearer token when one is set, 413 past
the body limit, 503 when batching's queue is full (UNAVAILABLE), 500 only for a fault of the server itself.
No request can stop the server.

The HTTP layer is uvicorn running a plain ASGI app on one event loop, in a thread of its own (so the
CLI, the serving check and the tests start and stop it the same way). The old standard-library
``ThreadingHTTPServer`` (a thread per connection, kept as the baseline in ``benchmarks/serve_baseline.py``)
served 1,525 requests/s at 8 clients but 1,005 at 64 with a p99 of 236 ms on two cores: 64 threads
fighting for the GIL to parse HTTP. Here the loop parses requests and TensorFlow runs on a small thread
pool; with ``batching`` (:mod:`tasks.serving.batching`) concurrent requests for one signature run as
one call. ``benchmarks/serve.py`` measures both against the baseline in one run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from tasks.core import layout
from tasks.core.errors import ParameterError
from tasks.core.records import CheckResult, ExportedModel
from tasks.serving.access import BearerCheck, require_token_off_loopback
from tasks.serving.batching import Answer, BatchingOptions, BatchScheduler, batch_key, batch_rows, run_one
from tasks.serving.repository import LoadedVersion, ModelRepository
from tasks.serving.rest import (
    PredictRequest,
    RequestError,
    SignatureSpec,
    encode,
    parse_json_body,
    parse_predict_request,
    signature_name_of,
)
from tasks.serving.sources import LocalVersionSource, open_model_source

log = logging.getLogger("freezeflow.serving")

DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_POLL_SECONDS = 2.0
DEFAULT_KEEP_VERSIONS = 2
# Bodies up to this size are parsed on the event loop (cheaper than a thread hop); larger ones in the
# pool, so one big request does not stall every other connection while its JSON is read.
_PARSE_ON_LOOP_BYTES = 64 * 1024
_START_SECONDS = 30.0
_GRACEFUL_SECONDS = 5  # requests in flight get this long to finish when the server stops

_PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(predict|classify|regress)$", re.I)
_STATUS = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?(/metadata)?$", re.I)


def _parse(loaded: LoadedVersion, raw: bytes) -> tuple[PredictRequest, SignatureSpec]:
    body = parse_json_body(raw)
    signature = loaded.signature(signature_name_of(body))
    return parse_predict_request(body, signature.spec), signature.spec


def _predict_alone(loaded: LoadedVersion, raw: bytes) -> Answer:
    request, _ = _parse(loaded, raw)
    return run_one(loaded.predict, request)


class _Service:
    """The answers: routes TF Serving's paths to the repository; one instance per server."""

    def __init__(self, repository: ModelRepository, max_body_bytes: int, bearer: Optional[BearerCheck],
                 executor: ThreadPoolExecutor, batching: Optional[BatchingOptions]) -> None:
        self.repository = repository
        self.max_body_bytes = max_body_bytes
        self.bearer = bearer
        self.executor = executor
        self.scheduler = BatchScheduler(batching, executor) if batching else None

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app: every path and method comes here. Plain ASGI, no framework: a request is a few
        dictionary reads and two ``send`` calls. The event loop's time per request is what limits a
        batching server under many clients, and Starlette's Request and Response objects were work
        per request that these few routes do not need (with the dtype fix in batch_key, server CPU per
        request at 64 clients went from 426 to 377 µs in benchmarks/serve.py, on a busier machine)."""
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        headers = _Headers(scope["headers"])
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, data = await self._answer(headers, receive, method, path)
        except _ClientGone:
            return  # nobody to answer
        except RequestError as exc:
            status, data = exc.status, encode({"error": exc.message})
            if status == 413:
                extra.append((b"connection", b"close"))  # do not read the rest of an oversized body
            elif status == 401:
                extra.append((b"www-authenticate", b"Bearer"))
        except Exception as exc:  # a bug or a TensorFlow fault: answer 500, keep serving
            log.exception("internal error on %s %s", method, path)
            status = 500
            data = encode({"error": f"Internal error: {' '.join(str(exc).split()) or type(exc).__name__}"})
        if log.isEnabledFor(logging.DEBUG):  # method, path and status only: never a header (it may hold the token)
            log.debug("%s %s %d %.1f ms", method, path, status, (time.perf_counter() - started) * 1000)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(data)).encode()), (b"content-type", b"application/json"),
                                *extra]})
        await send({"type": "http.response.body", "body": data})

    async def _answer(self, headers: "_Headers", receive: Any, method: str, path: str) -> Answer:
        if self.bearer is not None and not self.bearer.allows(headers.get(b"authorization")):
            raise RequestError("Unauthorized: send the header 'Authorization: Bearer <token>' with the token "
                               "in the server's --token-file", 401)
        if method == "POST":
            match = _PREDICT.match(path)
            if not match:
                raise RequestError(f"Malformed request: POST {path}", 404 if not path.startswith("/v1/") else 400)
            name, version, label, verb = match.groups()
            raw = await self._read_body(headers, receive)
            self._check_model(name, label)
            if verb.lower() != "predict":
                raise RequestError(f"{verb} is not served here; send the same model a :predict request")
            return await self._predict(self.repository.get(int(version) if version else None), raw)
        if method != "GET":  # TF Serving answers every other method so, with a JSON body
            raise RequestError(f"Malformed request: {method} {path}")
        match = _STATUS.match(path)
        if not match:
            raise RequestError(f"Malformed request: GET {path}", 404 if not path.startswith("/v1/") else 400)
        name, version, label, metadata = match.groups()
        self._check_model(name, label)
        number = int(version) if version else None
        return 200, encode(self.repository.metadata(number) if metadata else self.repository.status(number))

    def _check_model(self, name: str, label: Optional[str]) -> None:
        if name != self.repository.name:
            raise RequestError(f"Servable not found for request: Latest({name})", 404)
        if label is not None:
            raise RequestError("version labels are not served here; name the version: /versions/N")

    async def _read_body(self, headers: "_Headers", receive: Any) -> bytes:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise self._too_large(int(length))
        chunks: list[bytes] = []
        size = 0
        while True:  # chunked bodies too: the limit is counted as they arrive
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large(None)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, size: Optional[int]) -> RequestError:
        what = f"request body of {size} bytes" if size is not None else "request body"
        return RequestError(f"{what} is larger than the limit of {self.max_body_bytes} bytes; "
                            "send fewer instances per request", 413)

    async def _predict(self, loaded: LoadedVersion, raw: bytes) -> Answer:
        loop = asyncio.get_running_loop()
        if self.scheduler is None:
            return await loop.run_in_executor(self.executor, _predict_alone, loaded, raw)
        if len(raw) > _PARSE_ON_LOOP_BYTES:
            request, spec = await loop.run_in_executor(self.executor, _parse, loaded, raw)
        else:
            request, spec = _parse(loaded, raw)
        rows = batch_rows(request, spec)
        if rows is None:
            return await loop.run_in_executor(self.executor, run_one, loaded.predict, request)
        return await self.scheduler.submit(batch_key(loaded, request), loaded.predict, request, rows)


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class _Headers:
    """A request's headers as ASGI gives them (lower-case byte names); ``get`` returns the first as text."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, name: bytes) -> Optional[str]:
        for key, value in self._raw:
            if key == name:
                return value.decode("latin-1")
        return None


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off only on connections whose socket says
    # TCP, and with it on every answer (headers and body are two writes) waited 40 ms for the client's
    # delayed ACK (measured: 44 ms per request with socket.create_server's proto 0, under 1 ms with this).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        # A deep backlog: 64 clients connecting at once overflow a small one, and the kernel then drops
        # SYNs that clients retry only after a second.
        listener.listen(2048)
        return listener
    except (OSError, OverflowError) as exc:
        listener.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ParameterError(f"cannot listen on {host}:{port} ({reason}); choose another --port or --host") from exc


class ModelServer:
    """A running server: ``url`` is its base URL; ``close`` stops serving and polling."""

    def __init__(self, repository: ModelRepository, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, batching: Optional[BatchingOptions] = None,
                 token: Optional[str] = None, threads: Optional[int] = None) -> None:
        import uvicorn

        if max_body_bytes < 1:
            raise ParameterError(f"max_body_bytes must be 1 or more, got {max_body_bytes}")
        require_token_off_loopback(host, token)
        self.repository = repository
        self.batching = batching
        self._socket = _listen(host, port)
        self.host, self.port = self._socket.getsockname()[:2]
        # TensorFlow runs here; a few threads per core keep both cores busy without 64 threads contending.
        self._executor = ThreadPoolExecutor(max_workers=threads or 2 * (os.cpu_count() or 1) + 2,
                                            thread_name_prefix="predict")
        self._service = service = _Service(repository, max_body_bytes,
                                           BearerCheck(token) if token is not None else None, self._executor, batching)
        config = uvicorn.Config(
            service.asgi, interface="asgi3", lifespan="off", log_config=None, access_log=False, server_header=False,
            proxy_headers=False,  # nothing here trusts X-Forwarded-For
            timeout_keep_alive=60,  # an idle client keeps its connection a minute, as before
            timeout_graceful_shutdown=_GRACEFUL_SECONDS,
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    @property
    def batches(self) -> Optional[BatchScheduler]:
        """The batch scheduler (its counters show what ran together), or None without batching."""
        return self._service.scheduler

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}"

    @property
    def model_url(self) -> str:
        return f"{self.url}/v1/models/{self.repository.name}"

    def start(self) -> "ModelServer":
        """Serve from a background thread; returns once the server accepts requests."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [self._socket]},
                                            name="serving", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + _START_SECONDS
            while not self._uvicorn.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"the HTTP server on {self.url} did not start within {_START_SECONDS:g} s")
                time.sleep(0.005)
        return self

    def serve_forever(self) -> None:
        """Serve until interrupted (KeyboardInterrupt reaches the caller, who calls ``close``)."""
        self.start()
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)  # a short join, so a signal handler in the main thread runs promptly

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            # uvicorn finishes the requests in flight (up to timeout_graceful_shutdown), then stops; on a
            # loaded machine that took over 15 s once, and a serving thread still alive at interpreter exit
            # dies mid-traceback. So: wait for the graceful stop, then force it, and only then go on.
            self._uvicorn.should_exit = True
            self._thread.join(timeout=_GRACEFUL_SECONDS + 10)
            if self._thread.is_alive():
                log.warning("the HTTP server did not stop within %d s; forcing it", _GRACEFUL_SECONDS + 10)
                self._uvicorn.force_exit = True
                self._thread.join(timeout=30)
            self._thread = None
        self._socket.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
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
    batching: Optional[BatchingOptions] = None,
    token: Optional[str] = None,
) -> ModelServer:
    """Load the newest versions under ``source`` and bind a server to them (call ``start`` or ``serve_forever``).

    ``source``: a version folder (saved_model.pb inside), a model folder of numeric versions, or
    ``gs://bucket/prefix/MODEL[/VERSION]``. The model folder is polled every ``poll_seconds``.
    ``token``: requests must carry ``Authorization: Bearer <token>``; required off loopback.
    """
    if poll_seconds <= 0:
        raise ParameterError(f"poll_seconds must be more than 0, got {poll_seconds}")
    require_token_off_loopback(host, token)  # before loading anything: a refusal takes no time
    repository = ModelRepository(open_model_source(source, model_name), keep_versions=keep_versions)
    repository.refresh()
    server = ModelServer(repository, host=host, port=port, max_body_bytes=max_body_bytes, batching=batching,
                         token=token)
    repository.start_polling(poll_seconds)
    return server


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serving_check(exported: ExportedModel, reference_inputs: list, expected: list, *, rtol: float,
                  atol: float) -> CheckResult:
    """Serve ``exported`` on a free loopback port, send the guide's request form, compare with ``expected``.

    The request is ``{"instances": [{INPUT_KEY: v}, …]}`` (plus ``signature_name`` when the signature is
    not ``serving_default``), what the guide sends to its deployed model. Every failure, from loading to
    a wrong answer, comes back as a failed check with the reason, so validation can collect it. Answers
    are held to ``|served - expected| <= atol + rtol * |expected|``.
    """
    import numpy as np

    from tasks.core.tolerance import describe, measure
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
    result = measure(np.asarray(predictions), np.asarray(expected), rtol, atol)
    return CheckResult(name=name, passed=result["passed"],
                       detail="REST predict: " + describe(result, "served SavedModel", "checkpoint"))


def _load_failure(exc: Exception, repository: Optional[ModelRepository]) -> str:
    if repository is not None:
        errors = [s["status"]["error_message"] for s in repository.status()["model_version_status"]
                  if s["status"]["error_message"]]
        if errors:
            return errors[0]
    return " ".join(str(exc).split()) or type(exc).__name__
