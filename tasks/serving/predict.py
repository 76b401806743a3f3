"""Online prediction against any endpoint with TF Serving's REST contract: local, TF Serving or Vertex AI.

:func:`predict_instances` splits a long list of instances into requests under a size limit (Vertex
AI refuses bodies over 1.5 MB), sends them in order, retries 429 and 5xx answers and dropped
connections with exponential backoff, and returns the predictions merged in the order of the
instances. ``timeout`` bounds the whole of it, retries and backoff included: a server that accepts
and never answers costs at most that long, then one line says so. A Vertex AI URL gets an access token
from Application Default Credentials; a ``token`` (the local server's ``--token-file``) is sent as
``Authorization: Bearer``; neither is ever logged or put in an error message.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import urlsplit

from tasks.core.errors import ParameterError, PredictionError

log = logging.getLogger("freezeflow.predict")

VERTEX_MAX_REQUEST_BYTES = 1_500_000  # Vertex AI's online prediction request limit
DEFAULT_TIMEOUT_SECONDS = 60.0  # the whole predict call, every request and retry included
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def is_vertex_url(url: str) -> bool:
    """Vertex AI's API hosts (global, regional ``REGION-aiplatform…``) and its dedicated endpoints."""
    host = (urlsplit(url).hostname or "").lower()
    return (host == "aiplatform.googleapis.com" or host.endswith(("-aiplatform.googleapis.com", ".aiplatform.googleapis.com"))
            or host.endswith(".prediction.vertexai.goog"))


def predict_url(url: str) -> str:
    """``…/v1/models/NAME`` (or a Vertex endpoint) with ``:predict`` added when it is missing."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ParameterError(f"endpoint {url!r} must be an http(s) URL such as http://127.0.0.1:8501/v1/models/NAME")
    return url if parts.path.endswith(":predict") else url.rstrip("/") + ":predict"


def split_requests(instances: list, max_request_bytes: int, signature_name: Optional[str] = None) -> list[tuple[int, bytes]]:
    """Request bodies ``{"instances": [...]}`` each at most ``max_request_bytes``; (instance count, body) in order."""
    head = {"signature_name": signature_name} if signature_name else {}
    prefix = (json.dumps(head, separators=(",", ":"))[:-1] + ("," if head else "") + '"instances":[').encode()
    suffix = b"]}"
    room = max_request_bytes - len(prefix) - len(suffix)
    bodies: list[tuple[int, bytes]] = []
    chunk: list[bytes] = []
    size = 0
    for index, instance in enumerate(instances):
        item = json.dumps(instance, separators=(",", ":")).encode()
        if len(item) > room:
            raise ParameterError(
                f"instance {index} alone is {len(item) + len(prefix) + len(suffix)} bytes as a request, over the "
                f"limit of {max_request_bytes} bytes"
            )
        if chunk and size + 1 + len(item) > room:
            bodies.append((len(chunk), prefix + b",".join(chunk) + suffix))
            chunk, size = [], 0
        size += len(item) + (1 if chunk else 0)
        chunk.append(item)
    if chunk:
        bodies.append((len(chunk), prefix + b",".join(chunk) + suffix))
    return bodies


class _Auth:
    """Bearer tokens from Application Default Credentials (or given credentials), refreshed when stale."""

    def __init__(self, credentials: Any = None) -> None:
        try:
            import google.auth
            import google.auth.exceptions
            import google.auth.transport.requests
        except ImportError as exc:
            raise ImportError(f"a Vertex AI endpoint needs google-auth: pip install 'freezeflow[vertex]' ({exc})") from exc
        if credentials is None:
            try:
                credentials, _ = google.auth.default(scopes=_SCOPES)
            except google.auth.exceptions.DefaultCredentialsError as exc:
                raise PredictionError(
                    "no Application Default Credentials for Vertex AI: run 'gcloud auth application-default login' "
                    "or set GOOGLE_APPLICATION_CREDENTIALS"
                ) from exc
        self._credentials = credentials
        self._request = google.auth.transport.requests.Request()

    def headers(self) -> dict[str, str]:
        if not self._credentials.valid:
            self._credentials.refresh(self._request)
        headers: dict[str, str] = {}
        self._credentials.apply(headers)
        return headers


def send_predict_request(
    url: str,
    body: bytes,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    deadline: Optional[float] = None,
    max_attempts: int = 5,
    backoff_seconds: float = 0.5,
    max_backoff_seconds: float = 30.0,
    credentials: Any = None,
    token: Optional[str] = None,
    client: Any = None,
    auth: Optional[_Auth] = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """POST one request body; retry 429, 5xx and dropped connections; the answer as JSON.

    ``timeout``: seconds for all attempts together (or ``deadline``, a ``time.monotonic()`` value shared
    by several requests): each attempt waits at most the time left, and no backoff sleeps past it.
    """
    import httpx

    if max_attempts < 1:
        raise ParameterError(f"max_attempts must be 1 or more, got {max_attempts}")
    if timeout <= 0:
        raise ParameterError(f"timeout must be more than 0 seconds, got {timeout}")
    target = predict_url(url)
    if deadline is None:
        deadline = time.monotonic() + timeout
    if auth is None and is_vertex_url(target):
        auth = _Auth(credentials)
    own = client is None
    client = client or httpx.Client(timeout=timeout)
    try:
        for attempt in range(1, max_attempts + 1):
            headers = {"Content-Type": "application/json", **(auth.headers() if auth else {})}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            left = deadline - time.monotonic()
            if left <= 0:
                raise _out_of_time(target, timeout, "no attempt left in time", attempt - 1)
            try:
                response = client.post(target, content=body, headers=headers, timeout=left)
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if isinstance(exc, httpx.TimeoutException) and deadline - time.monotonic() < 0.05:
                    raise _out_of_time(target, timeout, reason, attempt) from exc
                if attempt == max_attempts:
                    raise PredictionError(f"POST {target} failed after {attempt} attempt(s): {reason}") from exc
                delay = _backoff(attempt, backoff_seconds, max_backoff_seconds, None)
                if delay >= deadline - time.monotonic():
                    raise _out_of_time(target, timeout, reason, attempt) from exc
                log.warning("POST %s: %s; retrying in %.1f s", target, reason, delay)
                sleep(delay)
                continue
            if response.status_code == 200:
                return _json_answer(response, target)
            reason = _error_text(response)
            if response.status_code != 429 and response.status_code < 500:
                raise PredictionError(f"{target} answered {response.status_code}: {reason}", response.status_code)
            if attempt == max_attempts:
                raise PredictionError(
                    f"{target} answered {response.status_code} after {attempt} attempt(s): {reason}", response.status_code
                )
            delay = _backoff(attempt, backoff_seconds, max_backoff_seconds, response.headers.get("Retry-After"))
            if delay >= deadline - time.monotonic():
                raise PredictionError(f"{target} answered {response.status_code} after {attempt} attempt(s) and "
                                      f"the {timeout:g} s timeout leaves no time to retry: {reason}", response.status_code)
            log.warning("POST %s answered %d; retrying in %.1f s", target, response.status_code, delay)
            sleep(delay)
        raise AssertionError("unreachable")
    finally:
        if own:
            client.close()


def _out_of_time(target: str, timeout: float, reason: str, attempts: int) -> PredictionError:
    return PredictionError(f"POST {target}: no answer within the {timeout:g} s timeout ({reason}, after {attempts} "
                           "attempt(s)); check that the server is up and answering, or give a longer --timeout")


def _backoff(attempt: int, base: float, cap: float, retry_after: Optional[str]) -> float:
    """Exponential with full jitter, so many clients do not retry in step; a server's Retry-After wins."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after.strip()), cap)
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def _json_answer(response: Any, target: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise PredictionError(f"{target} answered 200 with a body that is not JSON: {response.text[:200]!r}") from exc
    if not isinstance(data, dict):
        raise PredictionError(f"{target} answered 200 with JSON that is not an object")
    return data


def _error_text(response: Any) -> str:
    try:
        data = response.json()
    except ValueError:
        return " ".join(response.text.split())[:300] or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):  # Google APIs: {"error": {"code": 400, "message": "...", "status": "..."}}
            return str(error.get("message") or error)
        if error is not None:
            return str(error)
    return json.dumps(data)[:300]


def predict_instances(
    url: str,
    instances: list,
    *,
    signature_name: Optional[str] = None,
    max_request_bytes: int = VERTEX_MAX_REQUEST_BYTES,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    max_attempts: int = 5,
    backoff_seconds: float = 0.5,
    credentials: Any = None,
    token: Optional[str] = None,
) -> list:
    """Predictions for ``instances``, in their order, from as many requests as the size limit needs.

    ``timeout`` bounds the whole call: every request, retry and backoff together.
    """
    import httpx

    if not isinstance(instances, list) or not instances:
        raise ParameterError("instances must be a non-empty list, e.g. [{\"inputs\": 6.0}]")
    if max_request_bytes < 64:
        raise ParameterError(f"max_request_bytes must be at least 64, got {max_request_bytes}")
    if timeout <= 0:
        raise ParameterError(f"timeout must be more than 0 seconds, got {timeout}")
    deadline = time.monotonic() + timeout
    target = predict_url(url)
    bodies = split_requests(instances, max_request_bytes, signature_name)
    auth = _Auth(credentials) if is_vertex_url(target) else None
    predictions: list = []
    with httpx.Client(timeout=timeout) as client:
        for number, (count, body) in enumerate(bodies, start=1):
            answer = send_predict_request(target, body, timeout=timeout, deadline=deadline, max_attempts=max_attempts,
                                          backoff_seconds=backoff_seconds, token=token, client=client, auth=auth)
            got = answer.get("predictions")
            if not isinstance(got, list) or len(got) != count:
                shown = "no 'predictions' list" if not isinstance(got, list) else f"{len(got)} predictions"
                raise PredictionError(f"{target}: request {number} of {len(bodies)} sent {count} instances and got {shown}")
            predictions.extend(got)
    if len(bodies) > 1:
        log.info("%d instances sent to %s in %d requests", len(instances), target, len(bodies))
    return predictions


def read_instances(path: Path | str) -> list:
    """Instances from a file: a JSON list, a JSON ``{"instances": [...]}``, or JSON lines (one instance a line).

    ``-`` reads standard input.
    """
    import sys

    name = str(path)
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ParameterError(f"cannot read instances from {name}: {exc.strerror or exc}") from exc
    lines_first = name.endswith((".jsonl", ".ndjson"))
    if not lines_first:
        try:
            return _instances_of(json.loads(text), name)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":  # more than one JSON value: JSON lines
                raise ParameterError(f"{name} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    return list(_json_lines(text, name))


def _instances_of(data: Any, where: str) -> list:
    if isinstance(data, dict) and "instances" in data:
        data = data["instances"]
    if not isinstance(data, list) or not data:
        raise ParameterError(f"{where}: expected a non-empty list of instances or {{\"instances\": [...]}}")
    return data


def _json_lines(text: str, where: str) -> Iterator[Any]:
    found = False
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise ParameterError(f"{where} line {number} is not JSON: {exc.msg}") from exc
        found = True
    if not found:
        raise ParameterError(f"{where} holds no instances")
