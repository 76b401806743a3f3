"""How Google Cloud Storage failures read as freezeflow errors: transient (retry) or permanent (fix something).

Messages are one line, say what to do, and never carry URLs or headers: a resumable session URL is a
capability, and credentials must never reach a log.
"""

from __future__ import annotations

import re
import socket
from typing import Optional

import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from tasks.core.errors import DestinationError, PermanentDestinationError, TransientDestinationError

_URL = re.compile(r"\b[A-Z]+ https?://\S+:\s?|https?://\S+")
_JSON_MESSAGE = re.compile(r'"message":\s*"([^"]*)"')


def classify(exc: BaseException, what: str, bucket: str, missing_bucket: bool = False, *,
             host: str = "storage.googleapis.com", out_of_time: Optional[float] = None,
             token_server: Optional[str] = None) -> BaseException:
    """The DestinationError that says what failed and what to do; anything else (a bug) comes back as is.

    ``missing_bucket``: a 404 here means the bucket is missing (a listing); elsewhere a 404 is a lost
    resumable session or an object deleted under a retry, which a new attempt fixes. ``host``: where
    requests go, named when it does not answer. ``out_of_time``: the command's ``--timeout`` when it has
    run out: then the error is permanent, since retrying the stage would wait as long again.
    """
    if isinstance(exc, DestinationError):
        return exc
    unresolved = unresolved_host(exc)
    if unresolved is not None:
        return PermanentDestinationError(
            f"{what}: cannot reach {unresolved}: its name does not resolve; check the network connection, DNS "
            "and any proxy settings (HTTPS_PROXY)")
    if out_of_time is not None:
        cause = exc.cause if isinstance(exc, api_exceptions.RetryError) and exc.cause is not None else exc
        return PermanentDestinationError(
            f"{what}: no answer from {unresolved_or(cause, host)} within {out_of_time:g} s ({reason(cause)}); "
            f"check the network connection to it, or allow longer with --timeout")
    if isinstance(exc, api_exceptions.RetryError):
        return TransientDestinationError(f"{what}: still failing when retries ran out ({reason(exc.cause)}); "
                                         "retry later")
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return PermanentDestinationError(
            f"{what}: no Google credentials found; run 'gcloud auth application-default login' or set "
            "GOOGLE_APPLICATION_CREDENTIALS (STORAGE_EMULATOR_HOST for an emulator)")
    if isinstance(exc, auth_exceptions.RefreshError) and not getattr(exc, "retryable", False):
        return PermanentDestinationError(
            f"{what}: {token_server or token_host(exc) or 'the token server'} refused to exchange the credentials for a token "
            f"({reason(exc)}); check GOOGLE_APPLICATION_CREDENTIALS or renew them with "
            "'gcloud auth application-default login'")
    status = status_of(exc)
    if status in (401, 403):
        return PermanentDestinationError(
            f"{what}: permission denied ({reason(exc)}); grant the account Storage Object Admin "
            f"(roles/storage.objectAdmin) on bucket {bucket} or use other credentials")
    if status == 404 and missing_bucket:
        return PermanentDestinationError(f"{what}: bucket {bucket} does not exist; create it or fix the bucket in "
                                         "--dest")
    # 409/412: a concurrent change or a retried create; DataCorruption: the client already deleted the object.
    if isinstance(exc, DataCorruption) or status in (404, 408, 409, 412, 429) or (
            isinstance(status, int) and status >= 500):
        return TransientDestinationError(f"{what}: {reason(exc)}; retrying may help")
    if isinstance(status, int) and 400 <= status < 500:
        return PermanentDestinationError(f"{what}: {reason(exc)}; check the bucket and prefix in --dest")
    if isinstance(exc, (requests.exceptions.RequestException, auth_exceptions.TransportError, ConnectionError,
                        TimeoutError)):
        return TransientDestinationError(f"{what}: connection failed ({reason(exc)}); retrying may help")
    return exc


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception behind it: causes, contexts, urllib3's ``reason``, exceptions in ``args``."""
    found: list[BaseException] = []
    todo = [exc]
    while todo:
        link = todo.pop(0)
        if link is None or not isinstance(link, BaseException) or any(link is seen for seen in found):
            continue
        found.append(link)
        todo += [link.__cause__, link.__context__, getattr(link, "reason", None), getattr(link, "cause", None),
                 *(arg for arg in getattr(link, "args", ()) if isinstance(arg, BaseException))]
    return found


_HOST_IN_TEXT = re.compile(r"(?:host='|Failed to resolve ')([^']+)'")


def _host_of(link: BaseException) -> Optional[str]:
    for holder in (getattr(link, "conn", None), getattr(link, "pool", None)):
        host = getattr(holder, "host", None)
        if isinstance(host, str) and host:
            return host
    found = _HOST_IN_TEXT.search(str(link))
    return found.group(1) if found else None


def unresolved_host(exc: BaseException) -> Optional[str]:
    """The host whose name did not resolve, when that is why ``exc`` happened (retrying cannot fix it)."""
    chain = _chain(exc)
    if not any(isinstance(link, socket.gaierror) or type(link).__name__ == "NameResolutionError" for link in chain):
        return None
    return next((host for host in map(_host_of, chain) if host), "the server")


def unresolved_or(exc: BaseException, host: str) -> str:
    """The host named in ``exc`` (the token server, say), else ``host``."""
    return next((found for found in map(_host_of, _chain(exc)) if found), host)


def token_host(exc: BaseException) -> Optional[str]:
    return next((found for found in map(_host_of, _chain(exc)) if found), None)


def retryable(exc: BaseException, retry: Retry) -> bool:
    """The client's own retry predicate, less what retrying cannot fix: a name that does not resolve, refused
    credentials."""
    if unresolved_host(exc) is not None:
        return False
    if isinstance(exc, auth_exceptions.RefreshError) and not getattr(exc, "retryable", False):
        return False
    predicate = getattr(retry, "_predicate", None)
    return bool(predicate(exc)) if predicate is not None else False


_CAUSES = (
    ("ConnectionRefusedError", "connection refused"),
    ("ConnectTimeout", "connecting timed out"),
    ("ReadTimeout", "no answer in time"),
    ("ReadTimeoutError", "no answer in time"),
    ("SSLError", "the TLS handshake failed"),
    ("RemoteDisconnected", "the server closed the connection"),
    ("ConnectionResetError", "the connection was reset"),
)


def _connection_cause(exc: BaseException) -> Optional[str]:
    names = {type(link).__name__ for link in _chain(exc)}
    return next((text for name, text in _CAUSES if name in names), None)


def reason(exc: Optional[BaseException]) -> str:
    """A short, one-line reason with its HTTP status, without URLs (resumable session URLs are capabilities)."""
    if exc is None:
        return "no detail"
    errors = getattr(exc, "errors", None) or []
    if errors and isinstance(errors[0], dict) and errors[0].get("message"):
        text = str(errors[0]["message"])
    else:
        first = exc.args[0] if isinstance(exc, auth_exceptions.GoogleAuthError) and exc.args else None
        text = first if isinstance(first, str) else str(getattr(exc, "message", None) or exc)
        found = _JSON_MESSAGE.search(text)
        text = found.group(1) if found else _URL.sub("", text)
    if isinstance(exc, (requests.exceptions.RequestException, auth_exceptions.TransportError, ConnectionError,
                        TimeoutError)):
        text = _connection_cause(exc) or type(exc).__name__  # urllib3's own text runs to hundreds of characters
    text = _whole_words(" ".join(text.split()), 160) or type(exc).__name__
    status = status_of(exc)
    return f"HTTP {status}: {text}" if status is not None else text


def _whole_words(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, marked when cut: never mid-word."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:(") + " …"


def status_of(exc: BaseException) -> Optional[int]:
    """The HTTP status behind an error, whichever layer of the client raised it."""
    if isinstance(exc, InvalidResponse) and not isinstance(exc, DataCorruption):
        return getattr(getattr(exc, "response", None), "status_code", None)
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None
