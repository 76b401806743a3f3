"""A throwaway PostgreSQL server for tests: Debian's binaries, a data directory in a temporary folder, a free
loopback port, password authentication, one database; started in about 2 s and removed at the end."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import quote
from tests.support.ports import free_port

SUPERUSER = "freezeflow"
DATABASE = "prefect"
INSTALL_HINT = "apt-get install -y postgresql (the Debian package; .ci/run installs it)"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server programs are missing or the server did not start."""


def postgres_bindir() -> Path:
    """Where Debian keeps ``initdb`` and ``postgres`` (not on PATH): the newest /usr/lib/postgresql/N/bin."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresUnavailable(f"PostgreSQL's initdb was not found: {INSTALL_HINT}")


@dataclass
class PostgresServer:
    """One running cluster; ``url`` names its database with the password, ``url_without_password`` without."""

    root: Path
    port: int
    password: str
    process: subprocess.Popen
    user: str = SUPERUSER
    database: str = DATABASE
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{self.database}"

    @property
    def url_without_password(self) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def url_with_password(self, password: str) -> str:
        return f"postgresql+asyncpg://{self.user}:{quote(password, safe='')}@127.0.0.1:{self.port}/{self.database}"

    def psql(self, sql: str, database: Optional[str] = None) -> str:
        """Run one SQL statement as the superuser; the password travels in the environment, not the arguments."""
        result = subprocess.run(
            [str(postgres_bindir() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", database or self.database, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            env={**os.environ, "PGPASSWORD": self.password}, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise PostgresUnavailable(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster ends its sessions), then remove the data directory."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 2)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root: run them as Debian's ``postgres`` user then."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable("running as root needs runuser (util-linux) to start PostgreSQL as 'postgres'")
    return [runuser, "-u", "postgres", "--"]


def start_postgres(timeout: float = 60.0) -> PostgresServer:
    """initdb into a new temporary folder, start ``postgres`` on a free loopback port, create the database."""
    bindir = postgres_bindir()
    root = Path(tempfile.mkdtemp(prefix="freezeflow-pg-"))  # not under pytest's tmp: its folders are 0700 root
    password = secrets.token_urlsafe(18)
    pwfile = root / "superuser-password"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    as_user = _as_postgres_user()
    if as_user:
        import pwd

        owner = pwd.getpwnam("postgres")
        for path in (root, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    log = root / "postgres.log"
    try:
        init = subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER, "--auth=scram-sha-256",
             f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, timeout=timeout)
        pwfile.unlink()
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-2000:]}")
        port = free_port()
        with log.open("ab") as out:
            process = subprocess.Popen(
                [*as_user, str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",  # a test cluster
                 "-c", "max_connections=300"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        server = PostgresServer(root=root, port=port, password=password, process=process, log=log)
        deadline = time.monotonic() + timeout
        while True:
            ready = subprocess.run([str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)])
            if ready.returncode == 0:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                server.stop()
                raise PostgresUnavailable(f"postgres did not start on port {port}:\n{tail}")
            time.sleep(0.1)
        server.psql(f"CREATE DATABASE {DATABASE}", database="postgres")
        return server
    except BaseException:
        if not any(root.glob("data/postmaster.pid")):
            shutil.rmtree(root, ignore_errors=True)
        raise
