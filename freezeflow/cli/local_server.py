"""The local Prefect server that stays up between ``freezeflow`` commands: finding it, starting it, stopping it.

Without ``PREFECT_API_URL`` every command used to start Prefect's temporary server, pay its imports
and (in a new workspace) its database migrations, and throw it away (field notes: "What a Prefect
run costs"). Instead, ``run``, ``convert`` and ``smoke`` now look for the server the last command
started (its pid and URL are recorded in ``server.json``), check it with one ``/api/health`` request,
and use it; if none answers they start ``prefect server start`` detached (its own session, output to
``server.log``) and leave it running. There is one server home per user (``$FREEZEFLOW_SERVER_HOME``,
default ``~/.freezeflow/server``), so the database is migrated once, not once per workspace; each
Prefect version gets its own database folder there, because a database migrated by a newer Prefect
cannot be opened by an older one. The record is written and replaced under a file lock, so two
commands starting at once start one server.

``FREEZEFLOW_SERVER=ephemeral`` keeps Prefect's temporary server (CI, people who want nothing left
running). Nothing here imports Prefect: the health check is one request with the standard library.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import inspect
import json
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer

HOST = "127.0.0.1"
START_TIMEOUT = 300.0  # a fresh database: 6-17 s on an idle machine here, 78 s on a shared one at load 16
LOCK_TIMEOUT = 60.0  # the lock is held only to read, start or stop; never during a run
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL when stopping the server
MODES = ("local", "ephemeral")


class LocalServerError(RuntimeError):
    """The local server could not be started, reached or stopped; the message says what to do."""


@dataclass(frozen=True)
class ServerRecord:
    """What ``server.json`` holds about the running server."""

    pid: int
    url: str  # the API URL, ending in /api
    prefect_version: str
    started_at: float
    log: str
    prefect_home: str


# ---------------------------------------------------------------------------------------------- paths


def server_home() -> Path:
    """One folder per user for the server's record, lock, log and databases."""
    configured = os.environ.get("FREEZEFLOW_SERVER_HOME")
    root = Path(configured).expanduser() if configured else Path.home() / ".freezeflow" / "server"
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def record_path() -> Path:
    return server_home() / "server.json"


def log_path() -> Path:
    return server_home() / "server.log"


def installed_prefect_version() -> str:
    """The Prefect this interpreter would run, read from its metadata (importing Prefect takes seconds)."""
    from importlib.metadata import version

    return version("prefect")


def database_home(prefect_version: str) -> Path:
    return server_home() / f"prefect-{prefect_version}"


def mode() -> str:
    """``local`` (the default: a server that stays up) or ``ephemeral`` (Prefect's temporary server)."""
    value = (os.environ.get("FREEZEFLOW_SERVER") or "local").strip().lower()
    if value not in MODES:
        raise LocalServerError(f"FREEZEFLOW_SERVER={value!r} is not one of {', '.join(MODES)}; unset it or pick one")
    return value


# ---------------------------------------------------------------------------------------------- record


@contextmanager
def record_lock(timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the server home's lock file; commands that start or stop the server take turns here."""
    path = server_home() / "server.lock"
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise LocalServerError(f"{path} stayed locked for {timeout:g} s; is another freezeflow command "
                                           "stuck starting or stopping the server?") from exc
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_record() -> Optional[ServerRecord]:
    """The recorded server, or None when there is no record or it cannot be read (then it is replaced)."""
    try:
        data = json.loads(record_path().read_text())
        return ServerRecord(**{name: data[name] for name in ServerRecord.__dataclass_fields__})
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def write_record(record: ServerRecord) -> None:
    path = record_path()
    scratch = path.with_suffix(f".tmp-{os.getpid()}")
    scratch.write_text(json.dumps(asdict(record), indent=2) + "\n")
    scratch.replace(path)  # readers see the old record or the new one, never half of one


def remove_record() -> None:
    record_path().unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- process


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process that is a Prefect server (a recycled pid is not ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: certainly not the server this user started
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.is_dir():
        try:
            args = cmdline.read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie has exited; only its parent has not looked
            return False
        if not any(args):
            # Mid-exec: Popen returns once the child has switched to the new image, but the kernel puts the
            # new arguments in place a moment later, and until then cmdline reads empty (seen under load
            # right after start_server: the server counted as exited before it had begun).
            return True
        return is_server_command(args)
    return True


def is_server_command(args: list[bytes]) -> bool:
    """Whether a command line is a Prefect server's: ``prefect server start`` or freezeflow's wrapper of it."""
    return b"freezeflow.prefect_server" in args or (b"prefect" in args and b"server" in args and b"start" in args)


def healthy(url: str, timeout: float = 2.0) -> bool:
    """One ``GET {url}/health``: True when a Prefect API answers ``true``."""
    import http.client  # here, not at the top: `freezeflow --help` need not load the email parser
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or HOST, parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", parts.path.rstrip("/") + "/health")
        response = connection.getresponse()
        return response.status == 200 and response.read().strip() == b"true"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server() -> ServerRecord:
    """Start ``prefect server start`` detached, in its own session, its output appended to ``server.log``.

    It is the team server's command (:func:`freezeflow.cli.server_env.server_command`): Prefect's server with
    SQLite write transactions that wait for the lock, which two runs sharing the server need too.
    """
    from freezeflow.cli.server_env import server_command, server_environment

    version = installed_prefect_version()
    prefect_home = database_home(version)
    prefect_home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = server_environment({k: v for k, v in os.environ.items() if k != "PREFECT_UI_API_URL"}, HOST, port)
    env["PREFECT_HOME"] = str(prefect_home)  # one database per user and Prefect version, not per workspace
    command = server_command(HOST, port)
    log = log_path()
    with open(log, "ab") as output:
        output.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} freezeflow: {' '.join(command)}\n".encode())
        output.flush()
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches the run, not the server it shares
            cwd=str(prefect_home),
        )
    return ServerRecord(pid=process.pid, url=f"http://{HOST}:{port}/api", prefect_version=version,
                        started_at=time.time(), log=str(log), prefect_home=str(prefect_home))


def stop_process(pid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM the server's process group (it is its session leader), SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pid):
                return
            time.sleep(0.1)
    if _group_alive(pid):
        raise LocalServerError(f"the local Prefect server (process group {pid}) survived SIGKILL")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    if Path("/proc").is_dir():  # zombies still answer signal 0; reap our own child, ignore the rest
        try:
            os.waitpid(pgid, os.WNOHANG)
        except ChildProcessError:
            pass
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
                except OSError:
                    continue
                if int(fields[2]) == pgid and fields[0] != "Z":
                    return True
        return False
    return True


# ---------------------------------------------------------------------------------------------- use


@dataclass
class Connection:
    """The server a command will use: ``ready()`` waits until it answers (it may still be starting)."""

    record: ServerRecord
    started: bool  # this command started it

    def ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = self.record.started_at + timeout
        while not healthy(self.record.url):
            if not process_alive(self.record.pid):
                raise LocalServerError(f"the local Prefect server (pid {self.record.pid}) exited before it answered; "
                                       f"its log is {self.record.log}: {_last_line(self.record.log)}")
            if time.time() > deadline:
                raise LocalServerError(f"the local Prefect server at {self.record.url} did not answer within "
                                       f"{timeout:g} s; see {self.record.log}, or stop it with `freezeflow server stop`")
            time.sleep(0.1)


def _last_line(path: str) -> str:
    try:
        lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty log)"


def connect() -> Connection:
    """Find the recorded server and check it with one request, or start one; never waits for a new one.

    A record whose process is gone (a reboot, a kill) or that names another Prefect version is
    replaced, not trusted. A server still starting (another command started it a moment ago) is
    used: ``ready()`` waits for it.
    """
    version = installed_prefect_version()
    with record_lock():
        record = read_record()
        if record is not None and process_alive(record.pid):
            if record.prefect_version == version:
                if healthy(record.url) or time.time() - record.started_at < START_TIMEOUT:
                    return Connection(record, started=False)
            stop_process(record.pid)  # another Prefect version's server, or one that stopped answering
        record = start_server()
        write_record(record)
        return Connection(record, started=True)


def configured_api_url() -> Optional[str]:
    """The API the user pointed Prefect at, read without importing Prefect: ``PREFECT_API_URL``, the active
    profile's (``PREFECT_PROFILE`` or ``active`` in ``$PREFECT_HOME/profiles.toml``), or ``api.url`` in a
    ``prefect.toml`` in the current folder; None when there is none."""
    import tomllib

    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    profiles_path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(profiles_path.read_text())
        name = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
        url = ((profiles.get("profiles") or {}).get(name) or {}).get("PREFECT_API_URL")
        if url:
            return str(url)
    except (OSError, ValueError, AttributeError):
        pass
    try:
        url = (tomllib.loads(Path("prefect.toml").read_text()).get("api") or {}).get("url")
        return str(url) if url else None
    except (OSError, ValueError, AttributeError):
        return None


def use_local_server() -> Optional[Connection]:
    """Point this process's Prefect at the local server unless the user chose an API or the ephemeral mode.

    Returns the connection to wait on before the first Prefect call (None when there is nothing to
    wait for). ``PREFECT_API_URL`` is set at once, so Prefect never starts its temporary server. An API
    the user configured in a Prefect profile or ``prefect.toml`` is used as before.
    """
    if mode() == "ephemeral" or configured_api_url():
        return None
    connection = connect()
    os.environ["PREFECT_API_URL"] = connection.record.url
    if connection.started:
        typer.echo(f"started a local Prefect server at {connection.record.url.removesuffix('/api')} "
                   f"(pid {connection.record.pid}, log {connection.record.log}); it stays up for the next "
                   "command; `freezeflow server stop` stops it", err=True)
    return connection


# ---------------------------------------------------------------------------------------------- commands


def status() -> None:
    """Show the local Prefect server that freezeflow commands share; exit 0 when one is up, 1 when none."""
    with record_lock():
        record = read_record()
        if record is not None and not process_alive(record.pid):
            remove_record()
            typer.echo(f"no local Prefect server running (removed the record of pid {record.pid}, which is gone)")
            raise typer.Exit(1)
    if record is None:
        typer.echo("no local Prefect server running")
        raise typer.Exit(1)
    up = healthy(record.url)
    typer.echo(f"local Prefect server {'up' if up else 'starting (not answering yet)'} at "
               f"{record.url.removesuffix('/api')}")
    typer.echo(f"  pid {record.pid}, Prefect {record.prefect_version}, since "
               f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.started_at))}")
    typer.echo(f"  database {record.prefect_home}, log {record.log}")
    raise typer.Exit(0 if up else 1)


def stop() -> None:
    """Stop the local Prefect server that freezeflow commands share (exit 0 also when none was running)."""
    try:
        with record_lock():
            record = read_record()
            if record is None:
                typer.echo("no local Prefect server running")
                return
            if process_alive(record.pid):
                stop_process(record.pid)
                typer.echo(f"stopped the local Prefect server (pid {record.pid})")
            else:
                typer.echo(f"no local Prefect server running (removed the record of pid {record.pid}, which is gone)")
            remove_record()
    except LocalServerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)


def server_group(foreground: Callable[..., None]) -> typer.Typer:
    """``freezeflow server``: ``foreground`` (the team server) when no sub-command is named, else status/stop.

    The callback takes ``foreground``'s own options, read from its signature, so options added to the
    team server appear here without an edit.
    """
    signature = inspect.signature(foreground)

    @functools.wraps(foreground)
    def callback(ctx: typer.Context, **options: Any) -> None:
        if ctx.invoked_subcommand is None:
            foreground(**options)

    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    callback.__signature__ = signature.replace(parameters=[context, *signature.parameters.values()])  # type: ignore[attr-defined]
    callback.__annotations__ = {**getattr(foreground, "__annotations__", {}), "ctx": typer.Context}
    summary = (foreground.__doc__ or "").strip().split("\n\n")[0]
    group = typer.Typer(help=f"{summary}\n\n`server status` and `server stop` show and stop the local server that "
                             "`run`, `convert` and `smoke` start and share when PREFECT_API_URL is not set.")
    group.callback(invoke_without_command=True)(callback)
    group.command("status")(status)
    group.command("stop")(stop)
    return group
