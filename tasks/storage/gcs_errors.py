"""How Google Cloud Storage failures read as freezeflow errors: transient (retry) or permanent (fix something).

Messages are one line, say what to do, and never carry URLs or headers: a resumable session URL is a
capability, and credentials must never reach a log.
"""

from __future__ import annotations

import re
from typing import Optional

import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from tasks.core.errors import DestinationError, PermanentDestinationError, TransientDestinationError

_URL = re.compile(r"\b[A-Z]+ https?://\S+:\s?|https?://\S+")
_JSON_MESSAGE = re.compile(r'"message":\s*"([^"]*)"')


def classify(exc: BaseException, what: str, bucket: str, missing_bucket: bool = False) -> BaseException:
    """The DestinationError that says what failed and what to do; anything else (a bug) comes back as is.

    ``missing_bucket``: a 404 here means the bucket is missing (a listing); elsewhere a 404 is a lost
    resumable session or an object deleted under a retry, which a new attempt fixes.
    """
    if isinstance(exc, DestinationError):
        return exc
    if isinstance(exc, api_exceptions.RetryError):
        return TransientDestinationError(f"{what}: still failing when retries ran out ({reason(exc.cause)}); "
                                         "retry later")
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return PermanentDestinationError(
            f"{what}: no Google credentials found; run 'gcloud auth application-default login' or set "
            "GOOGLE_APPLICATION_CREDENTIALS (STORAGE_EMULATOR_HOST for an emulator)")
    if isinstance(exc, auth_exceptions.RefreshError) and not getattr(exc, "retryable", False):
        return PermanentDestinationError(f"{what}: the credentials were refused ({reason(exc)}); renew them "
                                         "with 'gcloud auth application-default login'")
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


def reason(exc: Optional[BaseException]) -> str:
    """A short, one-line reason with its HTTP status, without URLs (resumable session URLs are capabilities)."""
    if exc is None:
        return "no detail"
    errors = getattr(exc, "errors", None) or []
    if errors and isinstance(errors[0], dict) and errors[0].get("message"):
        text = str(errors[0]["message"])
    else:
        text = str(getattr(exc, "message", None) or exc)
        found = _JSON_MESSAGE.search(text)
        text = found.group(1) if found else _URL.sub("", text)
    text = " ".join(text.split())[:160] or type(exc).__name__
    status = status_of(exc)
    return f"HTTP {status}: {text}" if status is not None else text


def status_of(exc: BaseException) -> Optional[int]:
    """The HTTP status behind an error, whichever layer of the client raised it."""
    if isinstance(exc, InvalidResponse) and not isinstance(exc, DataCorruption):
        return getattr(getattr(exc, "response", None), "status_code", None)
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None
