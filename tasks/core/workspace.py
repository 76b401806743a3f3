"""Where freezeflow keeps its state: the workspace (cache records and stage outputs) and this machine's home.

The **workspace** is named by a URI: ``FREEZEFLOW_WORKSPACE`` (or ``--workspace``, or a flow's
``workspace`` parameter), a local folder or ``gs://bucket/prefix``; by default it is the local home,
``$FREEZEFLOW_HOME`` (default ``./.freezeflow``), as it always was. Every machine pointed at the same
workspace shares one cache. Its layout is the same for every backend::

    WORKSPACE/results/KEY           Prefect's result records (the value of a cached stage)
    WORKSPACE/cache-keys/KEY        Prefect's cache-key records (metadata naming the result), written last
    WORKSPACE/work/STAGE/TOKEN/...  a stage's output (local workspace), named by the stage's token
    WORKSPACE/artifacts/DIGEST/...  a stage's output (gs:// workspace), named by its content digest

Records name an artifact by its **workspace key** (``work/freeze/…`` or ``artifacts/…``) and its digest,
never by a machine's path. The **home** is this machine's own folder: the scratch cache an artifact of a
remote workspace is fetched into (``HOME/cache/DIGEST``, verified on the way in, size-capped, least
recently used evicted first), the folders stages build in, the serving cache.

This module decides those paths and knows no network: fetching from and uploading to a ``gs://``
workspace is :mod:`tasks.storage.workspace_store`.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Optional

from tasks.core.errors import ParameterError, StaleArtifactError

DEFAULT_HOME = ".freezeflow"
REMOTE_SCHEMES = ("gs://",)
ARTIFACTS = "artifacts"  # content-addressed outputs in a remote workspace
WORK = "work"  # token-named outputs in a local workspace (and the build area of a remote one)
DEFAULT_CACHE_BYTES = 10 << 30  # FREEZEFLOW_CACHE_BYTES: the scratch cache's cap
_YOUNG_SECONDS = 120.0  # a cached copy used this recently is never evicted (a parallel stage may be reading it)

# A workspace handed in with submitted work (a Dask worker runs items of batches from several
# machines in one process, on several threads): it wins over the process's environment, per thread.
_HANDED_IN: ContextVar[Optional[str]] = ContextVar("freezeflow_workspace", default=None)


def is_remote(uri: str) -> bool:
    return uri.startswith(REMOTE_SCHEMES)


def _local_home() -> Path:
    return Path(os.environ.get("FREEZEFLOW_HOME") or DEFAULT_HOME).expanduser().resolve()


def normalise(uri: str) -> str:
    """A workspace URI as every record and message names it: an absolute folder, or ``gs://bucket/prefix``."""
    uri = uri.strip()
    if not uri:
        raise ParameterError("the workspace is empty; give a folder or gs://bucket/prefix")
    if is_remote(uri):
        return uri.rstrip("/")
    if "://" in uri:
        raise ParameterError(f"workspace {uri!r}: only local folders and gs://bucket/prefix are supported")
    return str(Path(uri).expanduser().resolve())


def uri() -> str:
    """The workspace in use: the handed-in one, else ``FREEZEFLOW_WORKSPACE``, else the local home."""
    named = _HANDED_IN.get() or os.environ.get("FREEZEFLOW_WORKSPACE")
    return normalise(named) if named else str(_local_home())


def remote() -> bool:
    """True when the workspace is in an object store (artifacts travel through the scratch cache)."""
    return is_remote(uri())


def home() -> Path:
    """This machine's folder, absolute, created on first use: the local workspace itself, or, with a remote
    workspace, ``$FREEZEFLOW_HOME`` (scratch cache, build folders, serving cache)."""
    current = uri()
    root = _local_home() if is_remote(current) else Path(current)
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def using(workspace: str) -> Iterator[Path]:
    """Run the block (and the Prefect tasks it calls inline) against the workspace ``workspace`` (a URI)."""
    token = _HANDED_IN.set(normalise(workspace))
    try:
        yield home()
    finally:
        _HANDED_IN.reset(token)


def local_root() -> Path:
    """The local workspace's folder; a remote workspace has none."""
    current = uri()
    if is_remote(current):
        raise ParameterError(f"workspace {current} is not a local folder")
    return home()


def results_dir() -> Path:
    """Prefect's result storage of a local workspace: one JSON value per cache key."""
    path = local_root() / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def keys_dir() -> Path:
    """The cache policy's key storage of a local workspace: one metadata record per cache key."""
    path = local_root() / "cache-keys"
    path.mkdir(parents=True, exist_ok=True)
    return path


def stage_dir(stage: str, token: str) -> Path:
    """The local folder a stage builds its output for the inputs summarised by ``token`` in: in place in a
    local workspace; in this machine's build area when the workspace is remote."""
    return home() / WORK / stage / token[:24]


def key_of(folder: Path) -> Optional[str]:
    """The workspace key of a folder a stage built (``work/STAGE/TOKEN[/...]``); None for any other folder."""
    base = (home() / WORK).resolve()
    try:
        relative = Path(folder).resolve().relative_to(base)
    except ValueError:
        return None
    return f"{WORK}/{relative.as_posix()}"


def settle(folder: Path, digest: str) -> str:
    """The workspace key of a finished stage output: in a local workspace, the folder's own key; in a
    remote one, ``artifacts/DIGEST``, the folder moving into the scratch cache under its digest (where the
    upload reads it and the next stage on this machine finds it)."""
    key = key_of(folder)
    if key is None:
        raise ParameterError(f"{folder} is not a stage output folder of workspace {uri()}")
    if not remote():
        return key
    target = cache_dir() / digest
    if target.exists():
        shutil.rmtree(folder, ignore_errors=True)  # the same content is already here
        touch(target)
    else:
        Path(folder).rename(target)
    return f"{ARTIFACTS}/{digest}"


def local_path(artifact: Any) -> Path:
    """Where ``artifact``'s files are on this machine: the user's folder for a named input; in a local
    workspace the folder under its key; in a remote one its copy in the scratch cache (fetched by
    :func:`tasks.storage.workspace_store.materialise`)."""
    if artifact.source is not None:
        return Path(artifact.source)
    if not remote():
        return home() / artifact.key
    copy = cache_dir() / artifact.digest
    if copy.is_dir():
        return copy
    raise StaleArtifactError(f"{uri()}/{artifact.key} has not been fetched to this machine")


def location(artifact: Any) -> str:
    """How a message names an artifact: its local folder or its URI in the workspace."""
    if artifact.source is not None:
        return artifact.source
    current = uri()
    return f"{current}/{artifact.key}" if is_remote(current) else str(Path(current) / artifact.key)


# -- the scratch cache of a remote workspace -------------------------------------------------------------

def cache_dir() -> Path:
    path = home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_limit() -> int:
    text = os.environ.get("FREEZEFLOW_CACHE_BYTES")
    try:
        return int(text) if text else DEFAULT_CACHE_BYTES
    except ValueError:
        raise ParameterError(f"FREEZEFLOW_CACHE_BYTES={text!r} is not a whole number of bytes") from None


def touch(folder: Path) -> None:
    """Mark a cached copy as just used (its folder's mtime orders the LRU eviction)."""
    try:
        os.utime(folder)
    except FileNotFoundError:
        pass


def folder_size(folder: Path) -> int:
    """The bytes of every file below ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def evict(limit: Optional[int] = None, keep: tuple[str, ...] = (), dry_run: bool = False) -> list[tuple[Path, int]]:
    """Remove least recently used copies until the scratch cache holds at most ``limit`` bytes; never the
    copies named in ``keep`` or used in the last two minutes. Returns what was (or, with ``dry_run``, would
    be) removed and its size."""
    limit = cache_limit() if limit is None else limit
    entries = []
    for folder in cache_dir().iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            entries.append((folder.stat().st_mtime, folder, folder_size(folder)))
    total = sum(size for _, _, size in entries)
    removed = []
    now = time.time()
    for mtime, folder, size in sorted(entries):
        if total <= limit:
            break
        if folder.name in keep or now - mtime < _YOUNG_SECONDS:
            continue
        if not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
        removed.append((folder, size))
        total -= size
    return removed


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
