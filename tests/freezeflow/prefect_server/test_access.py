"""The auth-string rules of :mod:`freezeflow.prefect_server.access` that need no server."""

from __future__ import annotations

import base64

import pytest

from freezeflow.prefect_server.access import AccessError, basic_header, is_loopback, require_auth_off_loopback


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("prefect.internal", False),
])
def test_only_addresses_this_machine_alone_reaches_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_loopback_needs_no_auth_string_and_anything_else_does() -> None:
    require_auth_off_loopback("127.0.0.1", None)
    require_auth_off_loopback("0.0.0.0", "team:secret")
    with pytest.raises(AccessError, match=r"^--host 0\.0\.0\.0 lets other machines reach the Prefect API"):
        require_auth_off_loopback("0.0.0.0", None)


def test_the_header_is_the_one_prefects_server_checks() -> None:
    header = basic_header("team:s3cret")["Authorization"]
    scheme, creds = header.split()
    assert scheme == "Basic" and base64.b64decode(creds).decode() == "team:s3cret"
