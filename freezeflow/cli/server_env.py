"""How this project starts Prefect's own CLI and server: the command line and the server's environment.

Shared by ``freezeflow server`` (:mod:`freezeflow.cli.team`) and the local server that stays up
between commands (:mod:`freezeflow.cli.local_server`), which each import it; neither imports the other
for these, so the command modules have no import cycle.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Optional


def api_url_for(host: str, port: int) -> str:
    """The API URL a browser or a worker on this machine uses for a server bound to ``host``."""
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in reachable:  # an IPv6 literal
        reachable = f"[{reachable}]"
    return f"http://{reachable}:{port}/api"


def server_environment(base: Mapping[str, str], host: str, port: int, database_url: Optional[str] = None,
                       auth_string: Optional[str] = None) -> dict[str, str]:
    """The server's environment: its UI must call this server's API, not the default port 4200.

    Without ``PREFECT_UI_API_URL`` a server on another port serves a UI that shows "Can't connect to
    Server API" (field notes). A value the user set (for a proxy, say) is kept. The database URL and the
    auth string travel in the environment, never in the arguments, which every user sees in ``ps``.
    """
    api_url = api_url_for(host, port)
    env = dict(base)
    env.setdefault("PREFECT_UI_API_URL", api_url)
    env["PREFECT_API_URL"] = api_url  # the server's own services and messages name this server
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    if database_url is not None:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    if auth_string is not None:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
        env["PREFECT_API_AUTH_STRING"] = auth_string  # the server's own client calls (automations' actions)
    # `python -m freezeflow.prefect_server` must import this package even when it is not installed.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, base.get("PYTHONPATH", "")) if p)
    return env


def prefect_command(*args: str) -> list[str]:
    """Prefect's CLI run by this interpreter, so it is the Prefect this project installed."""
    return [sys.executable, "-m", "prefect", *args]


def server_command(host: str, port: int) -> list[str]:
    """``prefect server start`` in a process that first gives Prefect's SQLite its IMMEDIATE transactions
    (:mod:`freezeflow.prefect_server.sqlite`: why a worker's polling made the UI lose submissions)."""
    return [sys.executable, "-m", "freezeflow.prefect_server", "--host", host, "--port", str(port)]
