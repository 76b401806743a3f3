"""Who may call the server: loopback is open, a token closes it, and no other address serves without one."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest

from tasks.core.errors import ParameterError

TOKEN = "s3cret-token-4b1d9e"


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("example.com", False), ("", False),
])
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    from tasks.serving.access import is_loopback

    assert is_loopback(host) is loopback


def test_a_non_loopback_host_without_a_token_is_refused_before_loading_anything(model_dir: Path) -> None:
    from tasks.serving.server import open_server

    started = time.monotonic()
    with pytest.raises(ParameterError, match=r"^--host 0\.0\.0\.0 serves other machines: give --token-file FILE"):
        open_server(str(model_dir), host="0.0.0.0", port=0)
    assert time.monotonic() - started < 1.0  # refused before TensorFlow loaded the model


def test_with_a_token_every_route_needs_it_and_the_answer_never_shows_it(
    model_dir: Path, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    from tasks.serving.server import open_server

    caplog.set_level(logging.DEBUG)
    with open_server(str(model_dir), port=0, token=TOKEN).start() as server:
        predict = f"{server.model_url}:predict"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}):
            refused = client.post(predict, json={"instances": [6.0]}, headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["www-authenticate"] == "Bearer"
            assert refused.json() == {"error": "Unauthorized: send the header 'Authorization: Bearer <token>' with "
                                               "the token in the server's --token-file"}
        assert client.get(server.model_url).status_code == 401
        assert client.get(f"{server.model_url}/metadata").status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post(predict, json={"instances": [6.0]}, headers=good).json() == {"predictions": [4.0]}
        assert client.post(predict, json={"instances": [6.0]},
                           headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200  # scheme is case-blind
        assert client.get(server.model_url, headers=good).status_code == 200
        assert TOKEN not in repr(server.__dict__)
    assert "401" in caplog.text  # requests were logged…
    assert TOKEN not in caplog.text  # …and the token never


def test_the_predict_client_sends_the_token(model_dir: Path) -> None:
    from tasks.core.errors import PredictionError
    from tasks.serving.predict import predict_instances
    from tasks.serving.server import open_server

    with open_server(str(model_dir), port=0, token=TOKEN).start() as server:
        assert predict_instances(server.model_url, [{"inputs": 6.0}], token=TOKEN) == [4.0]
        with pytest.raises(PredictionError, match="answered 401: Unauthorized") as refused:
            predict_instances(server.model_url, [{"inputs": 6.0}], token="not-it")
        assert "not-it" not in str(refused.value)


@pytest.mark.parametrize("content, says", [
    (b"", "is empty"),
    (b"\n  \n", "is empty"),
    (b"two words", "printable ASCII without spaces"),
    (b"caf\xc3\xa9", "printable ASCII without spaces"),
])
def test_an_unusable_token_file_is_refused_without_echoing_it(tmp_path: Path, content: bytes, says: str) -> None:
    from tasks.serving.access import read_token_file

    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(ParameterError, match=says) as refused:
        read_token_file(path)
    assert str(refused.value).startswith(f"--token-file {path}")
    if content.strip():
        assert content.decode("utf-8", "replace").strip() not in str(refused.value)


def test_a_token_file_that_does_not_exist_is_named(tmp_path: Path) -> None:
    from tasks.serving.access import read_token_file

    with pytest.raises(ParameterError, match=r"--token-file .*missing: cannot read it \(No such file or directory\)"):
        read_token_file(tmp_path / "missing")


def test_a_token_file_with_a_trailing_newline_gives_the_token(tmp_path: Path) -> None:
    from tasks.serving.access import read_token_file

    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert read_token_file(path) == TOKEN
