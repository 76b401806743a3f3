"""The database behind ``freezeflow server``: a PostgreSQL URL checked before Prefect starts, so that an
unreachable server, a refused password or something that is not PostgreSQL fails in one line within seconds.

Every message names host, port, user and database, never the password.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Optional

CONNECT_SECONDS = 10.0  # each of the two probes below; both together stay well under the promised 30 s
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
# PostgreSQL answers this 8-byte SSLRequest with one byte, "S" or "N", before anything else
# (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-SSL).
SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")


class DatabaseError(ValueError):
    """The database URL is not usable; the message is one line a user can act on."""


@dataclass(frozen=True)
class PostgresUrl:
    """A parsed ``postgresql+asyncpg://`` URL; ``str()`` and ``shown`` hide the password."""

    host: str
    port: int
    user: Optional[str]
    password: Optional[str]
    database: str
    query: tuple[tuple[str, str], ...] = ()

    def render(self, hide_password: bool = True) -> str:
        from sqlalchemy.engine import URL

        return URL.create("postgresql+asyncpg", username=self.user, password=self.password, host=self.host,
                          port=self.port, database=self.database, query=dict(self.query),
                          ).render_as_string(hide_password=hide_password)

    @property
    def shown(self) -> str:
        return self.render(hide_password=True)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.shown


def parse_postgres_url(value: str, what: str = "--database") -> PostgresUrl:
    """``postgresql://``, ``postgres://`` or ``postgresql+asyncpg://`` (Prefect's driver) -> :class:`PostgresUrl`."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value.strip())
    except ArgumentError:
        raise DatabaseError(f"{what}: not a database URL; expected postgresql://USER@HOST:5432/DATABASE") from None
    if url.drivername not in POSTGRES_SCHEMES:
        raise DatabaseError(f"{what}: {url.drivername}:// is not PostgreSQL; expected postgresql://USER@HOST:5432/"
                            "DATABASE (leave --database out to use SQLite)")
    if not url.database:
        raise DatabaseError(f"{what}: the URL names no database; expected postgresql://USER@HOST:5432/DATABASE")
    query = tuple((k, v if isinstance(v, str) else v[-1]) for k, v in url.query.items())
    return PostgresUrl(host=url.host or "localhost", port=url.port or 5432, user=url.username,
                       password=url.password, database=url.database, query=query)


def _speaks_postgres(url: PostgresUrl, timeout: float) -> None:
    """Open a TCP connection and send PostgreSQL's SSLRequest: anything but "S"/"N" is not PostgreSQL."""
    try:
        with socket.create_connection((url.host, url.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
    except socket.gaierror as exc:
        raise DatabaseError(f"cannot resolve the database host {url.host!r}: {exc.strerror}") from None
    except socket.timeout:
        raise DatabaseError(f"{url.where} accepted a connection but did not answer as PostgreSQL within {timeout:g} s "
                            "(an HTTP server does that); is it PostgreSQL's host and port?") from None
    except OSError as exc:
        raise DatabaseError(f"cannot reach PostgreSQL at {url.where}: {exc.strerror or exc}; "
                            "is it running and listening on that address?") from None
    if answer not in (b"S", b"N"):
        raise DatabaseError(f"{url.where} is not a PostgreSQL server (it answered PostgreSQL's first message with "
                            f"{answer[:1]!r}); check the host and port in the database URL")


async def _server_version(url: PostgresUrl, timeout: float) -> str:
    import asyncpg

    connection = await asyncpg.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                                       database=url.database, timeout=timeout)
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def check_postgres(url: PostgresUrl, timeout: float = CONNECT_SECONDS) -> str:
    """Connect as Prefect will and return PostgreSQL's version, or raise :class:`DatabaseError` in one line.

    asyncpg, like libpq, takes a password left out of the URL from ``PGPASSWORD`` or ``~/.pgpass``.
    """
    import asyncpg

    _speaks_postgres(url, timeout)
    who = f"user {url.user!r}" if url.user else "the default user"
    try:
        return asyncio.run(asyncio.wait_for(_server_version(url, timeout), timeout + 2))
    except asyncpg.InvalidPasswordError:
        raise DatabaseError(f"PostgreSQL at {url.where} refused the password for {who} (database {url.database!r}); "
                            "check the password in FREEZEFLOW_DATABASE_URL, PGPASSWORD or ~/.pgpass") from None
    except asyncpg.InvalidCatalogNameError:
        raise DatabaseError(f"PostgreSQL at {url.where} has no database {url.database!r}; create it first: "
                            f"createdb -h {url.host} -p {url.port}{' -U ' + url.user if url.user else ''} "
                            f"{url.database}") from None
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        raise DatabaseError(f"PostgreSQL at {url.where} refused {who}: {exc}") from None
    except asyncpg.PostgresError as exc:
        raise DatabaseError(f"PostgreSQL at {url.where} refused the connection: {type(exc).__name__}: {exc}") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise DatabaseError(f"PostgreSQL at {url.where} did not finish logging in within {timeout:g} s") from None
    except (OSError, asyncpg.InterfaceError) as exc:
        raise DatabaseError(f"cannot connect to PostgreSQL at {url.where}: {type(exc).__name__}: {exc}") from None
