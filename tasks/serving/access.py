"""Who may talk to the local server: loopback stays open (as TF Serving is), any other address needs a bearer token.

The token comes from a file (``--token-file``), never from the command line, so it does not show in a
process list or a shell history. It is kept only to compare against each request's
``Authorization: Bearer …`` header in constant time; no message or log line ever contains it.
"""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path
from typing import Optional

from tasks.core.errors import ParameterError

_MAX_TOKEN_BYTES = 4096


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; anything else (0.0.0.0, a hostname, an interface) reaches other machines."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path | str) -> str:
    """The token in ``path``: one line of printable ASCII without spaces (a trailing newline is fine)."""
    where = Path(path)
    try:
        data = where.read_bytes()[: _MAX_TOKEN_BYTES + 1]
    except OSError as exc:
        raise ParameterError(f"--token-file {where}: cannot read it ({exc.strerror or type(exc).__name__})") from exc
    token = data.strip()
    if not token:
        raise ParameterError(f"--token-file {where} is empty; write one token (e.g. from `openssl rand -hex 32`) in it")
    if len(data) > _MAX_TOKEN_BYTES or not all(0x21 <= byte <= 0x7E for byte in token):
        # Nothing of the file's content goes into the message: it may be the secret itself.
        raise ParameterError(f"--token-file {where} must hold one token of printable ASCII without spaces, "
                             f"at most {_MAX_TOKEN_BYTES} bytes")
    return token.decode("ascii")


def require_token_off_loopback(host: str, token: Optional[str]) -> None:
    """Refuse to serve other machines without a token."""
    if token is None and not is_loopback(host):
        raise ParameterError(f"--host {host} serves other machines: give --token-file FILE (clients then send "
                             "'Authorization: Bearer <token>'), or serve on 127.0.0.1")


class BearerCheck:
    """Compares the token of an ``Authorization: Bearer …`` header with the expected one in constant time."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token.encode("ascii")

    def allows(self, header: Optional[str]) -> bool:
        if header is None:
            return False
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer":  # the scheme is case-insensitive (RFC 6750, RFC 9110)
            return False
        return hmac.compare_digest(value.strip().encode("latin-1", "replace"), self._token)

    def __repr__(self) -> str:  # never the token
        return "BearerCheck(<token>)"
