"""The database check ``freezeflow server --database`` runs before Prefect starts, against a real
PostgreSQL, a closed port, an HTTP server and a socket that never answers: one line each, in seconds,
and never the password."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from typing import Iterator

import pytest

from freezeflow.prefect_server.database import DatabaseError, check_postgres, parse_postgres_url
from tests.support.postgres import PostgresServer, free_port


def test_postgres_urls_of_every_spelling_become_prefects_asyncpg_url_and_hide_the_password() -> None:
    for spelling in ("postgresql", "postgres", "postgresql+asyncpg"):
        url = parse_postgres_url(f"{spelling}://team:s3cret@db.example:6543/prefect")
        assert (url.host, url.port, url.user, url.password, url.database) == (
            "db.example", 6543, "team", "s3cret", "prefect")
        assert url.render(hide_password=False) == "postgresql+asyncpg://team:s3cret@db.example:6543/prefect"
        assert "s3cret" not in url.shown and "s3cret" not in str(url)
    assert parse_postgres_url("postgresql://team@db/prefect").port == 5432


@pytest.mark.parametrize("value, message", [
    ("mysql://u:p@h/db", "--database: mysql:// is not PostgreSQL"),
    ("sqlite:///x.db", "--database: sqlite:// is not PostgreSQL"),
    ("postgresql://u@h:5432", "--database: the URL names no database"),
    ("not a url", "--database: not a database URL"),
])
def test_a_url_that_is_not_postgresql_is_refused_before_any_connection(value: str, message: str) -> None:
    with pytest.raises(DatabaseError) as refused:
        parse_postgres_url(value)
    assert str(refused.value).startswith(message)


def timed_check(url: str) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(DatabaseError) as refused:
        check_postgres(parse_postgres_url(url), timeout=5)
    message = str(refused.value)
    assert "\n" not in message
    return message, time.monotonic() - started


def test_the_real_server_answers_with_its_version(postgres: PostgresServer) -> None:
    assert check_postgres(parse_postgres_url(postgres.url)).split(".")[0].isdigit()


def test_a_wrong_password_is_named_without_the_password(postgres: PostgresServer) -> None:
    message, seconds = timed_check(postgres.url_with_password("not-the-password-xyz"))
    assert message.startswith(f"PostgreSQL at 127.0.0.1:{postgres.port} refused the password for user 'freezeflow'")
    assert "not-the-password-xyz" not in message and postgres.password not in message
    assert seconds < 5


def test_a_missing_database_says_how_to_create_it(postgres: PostgresServer) -> None:
    url = postgres.url.rsplit("/", 1)[0] + "/nodb"
    message, _ = timed_check(url)
    assert message == (f"PostgreSQL at 127.0.0.1:{postgres.port} has no database 'nodb'; create it first: "
                       f"createdb -h 127.0.0.1 -p {postgres.port} -U freezeflow nodb")


def test_a_port_nobody_listens_on_fails_at_once() -> None:
    port = free_port()
    message, seconds = timed_check(f"postgresql://u:pw@127.0.0.1:{port}/prefect")
    assert message.startswith(f"cannot reach PostgreSQL at 127.0.0.1:{port}: Connection refused")
    assert seconds < 2


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_server_does_not_answer_as_postgresql(http_port: int) -> None:
    # It waits for a request line that PostgreSQL's binary first message never ends.
    message, seconds = timed_check(f"postgresql://u:pw@127.0.0.1:{http_port}/prefect")
    assert message.startswith(f"127.0.0.1:{http_port} accepted a connection but did not answer as PostgreSQL "
                              "within 5 s")
    assert seconds < 8


def test_a_server_that_speaks_another_protocol_first_is_not_postgresql() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def banner() -> None:  # as a MySQL server greets every connection: packet length, protocol 10, version
            connection, _ = listener.accept()
            with connection:
                connection.sendall(b"J\x00\x00\x00\x0a8.0.36\x00")
                connection.recv(64)

        thread = threading.Thread(target=banner, daemon=True)
        thread.start()
        message, seconds = timed_check(f"postgresql://u:pw@127.0.0.1:{port}/prefect")
        thread.join(5)
    assert message.startswith(f"127.0.0.1:{port} is not a PostgreSQL server (it answered PostgreSQL's first "
                              "message with b'J'")
    assert seconds < 2
