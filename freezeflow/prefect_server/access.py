"""Who may call the Prefect API: the auth string a server requires (Prefect's
``PREFECT_SERVER_API_AUTH_STRING``) and the one clients send (``PREFECT_API_AUTH_STRING``).

The rules: a server listening beyond loopback needs an auth string; an auth string comes from a file or
the environment, never from the command line (where every user of the machine reads it in the process
list); and a client finds out before it starts work whether the API accepts it, with one line if not.
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from typing import Mapping, Optional

SERVER_ENV = "PREFECT_SERVER_API_AUTH_STRING"
CLIENT_ENV = "PREFECT_API_AUTH_STRING"
CHECK_SECONDS = 10.0


class AccessError(RuntimeError):
    """The API cannot be used as configured; the message is one line and holds no secret."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1 and ``localhost``.

    Any other name counts as reachable from outside: it may resolve to a public interface.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_auth_string_file(path: Path, what: str = "--auth-string-file") -> str:
    """The auth string in ``path`` (one line; a trailing newline is not part of it)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise AccessError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise AccessError(f"{what} {path}: is a folder, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessError(f"{what} {path}: cannot be read ({type(exc).__name__})") from None
    value = text.strip("\r\n")
    if not value.strip():
        raise AccessError(f"{what} {path}: the file is empty; write the auth string into it")
    if "\n" in value:
        raise AccessError(f"{what} {path}: holds more than one line; write only the auth string")
    return value


def server_auth_string(auth_string_file: Optional[Path], environ: Mapping[str, str]) -> Optional[str]:
    """The server's auth string: ``--auth-string-file`` first, then ``PREFECT_SERVER_API_AUTH_STRING``."""
    if auth_string_file is not None:
        return read_auth_string_file(auth_string_file)
    return environ.get(SERVER_ENV) or None


def require_auth_off_loopback(host: str, auth_string: Optional[str]) -> None:
    if auth_string is None and not is_loopback(host):
        raise AccessError(
            f"--host {host} lets other machines reach the Prefect API, so it needs an auth string: "
            f"--auth-string-file FILE or {SERVER_ENV} (clients then set {CLIENT_ENV} to the same value)")


def basic_header(auth_string: str) -> dict[str, str]:
    """The header Prefect's client sends for an auth string (HTTP Basic with the string as credentials)."""
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


def check_api_access(api_url: str, auth_string: Optional[str], timeout: float = CHECK_SECONDS) -> None:
    """Ask the API something that needs authentication (``/admin/version``; ``/health`` does not) with the
    client's auth string; raise :class:`AccessError` with the reason in one line."""
    import httpx

    url = api_url.rstrip("/")
    headers = basic_header(auth_string) if auth_string else {}
    try:
        response = httpx.get(f"{url}/admin/version", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise AccessError(f"no Prefect API answered at {url} ({type(exc).__name__}); start one with "
                          "`freezeflow server` or point PREFECT_API_URL at yours") from None
    if response.status_code == 401:
        if auth_string:
            raise AccessError(f"the Prefect API at {url} refused the auth string in {CLIENT_ENV} (401 Unauthorized); "
                              "set it to the server's auth string")
        raise AccessError(f"the Prefect API at {url} needs an auth string (401 Unauthorized): set {CLIENT_ENV} "
                          "to the server's auth string (or put it in your Prefect profile)")
    if response.status_code >= 400:
        raise AccessError(f"the Prefect API at {url} answered HTTP {response.status_code} to /admin/version")


def check_configured_api() -> None:
    """Before a command runs a flow: if Prefect is pointed at an API, make sure it lets us in.

    With no ``PREFECT_API_URL`` Prefect starts a temporary local server, which needs no auth string.
    """
    from prefect.settings import get_current_settings

    api = get_current_settings().api
    if api.url:
        auth = api.auth_string.get_secret_value() if api.auth_string is not None else None
        check_api_access(str(api.url), auth)


def redact(text: str, *secrets: Optional[str]) -> str:
    """``text`` with each secret replaced by ``***`` (for messages that quote other programs' output)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
