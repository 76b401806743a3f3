"""SQLite for Prefect's server without "database is locked": every write transaction takes the write lock
when it begins (``BEGIN IMMEDIATE``) instead of at its first write.

Why. Prefect opens its write transactions ``BEGIN DEFERRED`` (``AioSqliteConfiguration.begin_transaction``).
``create_flow_run`` reads the deployment, then inserts the run; meanwhile workers' polls, heartbeats and the
server's own services write too. A deferred transaction that already reads and then needs the write lock is
refused at once with SQLITE_BUSY (or SQLITE_BUSY_SNAPSHOT when another write committed since its read):
SQLite does not call the busy handler for that upgrade, so Prefect's ``PRAGMA busy_timeout = 60000`` never
applies and the API answers 503. Measured here with 20 concurrent creates while two workers polled every
second: 20 of 41 creates answered 503 (17 SQLITE_BUSY, 3 SQLITE_BUSY_SNAPSHOT), all in
``create_flow_run``'s INSERT. A transaction that starts ``IMMEDIATE`` waits in the busy handler for the
lock instead, and the same load gave no 503 at all (docs/operations.md has the figures).

How. Prefect lets a server be given its own database configuration
(``prefect.server.database.dependencies.set_database_config``); this subclass changes only the BEGIN mode.
Reads outside transactions stay lock-free (WAL). PostgreSQL is untouched.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator


def immediate_sqlite_configuration(connection_url: str) -> Any:
    """Prefect's SQLite configuration whose transactions all begin IMMEDIATE."""
    from prefect.server.database.configurations import SQLITE_BEGIN_MODE, AioSqliteConfiguration

    class ImmediateSqliteConfiguration(AioSqliteConfiguration):
        @asynccontextmanager
        async def begin_transaction(self, session: Any, with_for_update: bool = False) -> AsyncGenerator[Any, None]:
            token = SQLITE_BEGIN_MODE.set("IMMEDIATE")  # Prefect's own hook: its "begin" listener emits BEGIN <mode>
            try:
                async with session.begin() as transaction:
                    yield transaction
            finally:
                SQLITE_BEGIN_MODE.reset(token)

    return ImmediateSqliteConfiguration(connection_url=connection_url)


def configure_prefect_database() -> str:
    """Install the IMMEDIATE configuration if this server's database is SQLite; returns the dialect name."""
    from prefect.server.database.dependencies import set_database_config
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    if url.startswith("sqlite"):
        set_database_config(immediate_sqlite_configuration(url))
        return "sqlite"
    return url.split(":", 1)[0].split("+", 1)[0]
