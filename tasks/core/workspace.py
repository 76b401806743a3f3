"""Where freezeflow keeps its own state on disk: task results (the cache) and each stage's outputs.

Everything lives under one folder, ``$FREEZEFLOW_HOME`` (default ``./.freezeflow``), so that every
process that shares it (the CLI, a worker, the tests) shares the cache. This module is the only place
that decides those paths.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator, Optional

DEFAULT_HOME = ".freezeflow"

# A workspace handed in with submitted work (a Dask worker runs items of batches from several
# machines in one process, on several threads): it wins over the process's environment, per thread.
_HANDED_IN: ContextVar[Optional[str]] = ContextVar("freezeflow_workspace", default=None)


def home() -> Path:
    """The workspace root, absolute, created on first use."""
    root = Path(_HANDED_IN.get() or os.environ.get("FREEZEFLOW_HOME") or DEFAULT_HOME).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def using(root: str) -> Iterator[Path]:
    """Run the block (and the Prefect tasks it calls inline) against the workspace ``root``."""
    token = _HANDED_IN.set(root)
    try:
        yield home()
    finally:
        _HANDED_IN.reset(token)


def results_dir() -> Path:
    """Prefect's result storage: one JSON record per cache key."""
    path = home() / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def stage_dir(stage: str, token: str) -> Path:
    """The folder a stage's output for the inputs summarised by ``token`` lives in."""
    return home() / "work" / stage / token[:24]


@contextmanager
def building(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; move it into place only if the block succeeds.

    A stage writes its output here, so a crash or an error never leaves half a model where a
    later run (or a cached record) would take it for a whole one.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        yield scratch
        if final.exists():
            shutil.rmtree(final)
        scratch.rename(final)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
