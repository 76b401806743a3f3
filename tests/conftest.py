"""Shared fixtures: an isolated workspace per test, one Prefect test harness per session, the guide's files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

# Offline, quiet Prefect; set before anything imports it (field notes).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="freezeflow-prefect-home-"))
# The session's Prefect harness sets its API URL as a Prefect setting, not in the environment: without
# these, a CLI command run in-process would start the local server that stays up, in the user's home.
# Tests of that server set both per test.
os.environ.setdefault("FREEZEFLOW_SERVER", "ephemeral")
os.environ.setdefault("FREEZEFLOW_SERVER_HOME", tempfile.mkdtemp(prefix="freezeflow-server-home-"))

import pytest

from tests.guide import write_guide_checkpoint
from tests.support.records import by_folder
from tests.support.postgres import PostgresServer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def workspace_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own FREEZEFLOW_HOME, so caches never leak between tests."""
    home = tmp_path / "freezeflow-home"
    monkeypatch.setenv("FREEZEFLOW_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real Prefect API (the test harness: a temporary server and database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def guide_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention folder with the guide's four TF1 files (copy it before changing it)."""
    folder = tmp_path_factory.mktemp("guide") / "ckpt"
    write_guide_checkpoint(folder)
    return folder


@pytest.fixture
def guide_checkpoint(guide_checkpoint_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the guide's files; returns the prefix ``.../model``."""
    import shutil

    target = tmp_path / "guide-ckpt"
    shutil.copytree(guide_checkpoint_dir, target)
    return target / "model"


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A FREEZEFLOW_HOME for session-scoped fixtures that build records once for many tests."""
    home = tmp_path_factory.mktemp("session-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FREEZEFLOW_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def guide_records(guide_checkpoint_dir: Path, session_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The guide's checkpoint described, frozen and exported once: records for tests that only read them."""
    import shutil

    from tasks.tf.checkpoints import describe_checkpoint
    from tasks.tf.saved_models import export_saved_model
    from tasks.tf.freezing import write_frozen_graph

    folder = tmp_path_factory.mktemp("guide-records") / "ckpt"
    shutil.copytree(guide_checkpoint_dir, folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FREEZEFLOW_HOME", str(session_home))
        checkpoint = describe_checkpoint(folder / "model", output_nodes=["y"])
        return {
            "checkpoint": checkpoint,
            "frozen": by_folder(write_frozen_graph(checkpoint)),
            "exported": by_folder(export_saved_model(checkpoint)),
        }



@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (Debian's package, which .ci/run installs) on a free loopback port, with
    password authentication and an empty database, for the whole session."""
    from tests.support.postgres import start_postgres

    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
