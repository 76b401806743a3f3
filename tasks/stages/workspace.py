"""A stage pointed at the workspace in use: its result storage, its cache policy's key storage, and the store
that moves its artifacts (:mod:`tasks.storage.workspace_store`).

Kept apart from :mod:`tasks.stages.cache_policy`, which every stage imports: what is imported here is not
part of any stage's cache key (moving bytes differently computes nothing differently).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from tasks.core import workspace
from tasks.storage.workspace_store import open_store


def in_workspace(stage: Any, refresh: bool = False) -> Any:
    """``stage`` pointed at the workspace in use: Prefect's result storage at ``WORKSPACE/results``, its
    cache policy's key storage at ``WORKSPACE/cache-keys``; with ``FREEZEFLOW_LOCKS`` set, under Prefect's
    SERIALIZABLE isolation with a Redis lock per cache key, so two machines that reach the same stage with
    the same inputs compute it once and the second reads the first's result."""
    store = open_store()
    store.result_storage = result_storage()
    locks = lock_manager()
    configured = stage.cache_policy.configure(key_storage=key_storage(), lock_manager=locks,
                                              isolation_level="SERIALIZABLE" if locks is not None else None)
    configured.store = store
    return stage.with_options(result_storage=store.result_storage, cache_policy=configured,
                              refresh_cache=refresh or None)


def result_storage() -> Any:
    """Prefect's result storage in the workspace: a folder, or a saved fsspec block over gcsfs."""
    if not workspace.remote():
        return Path(workspace.results_dir())
    return _remote_block("results")


def key_storage() -> Any:
    """The cache policy's key storage in the workspace, beside the results (the key is written last)."""
    if not workspace.remote():
        return Path(workspace.keys_dir())
    return _remote_block("cache-keys")


_BLOCKS: dict[str, Any] = {}


def _remote_block(folder: str) -> Any:
    """A ``RemoteFileSystem`` at ``WORKSPACE/folder``, saved to the Prefect API under a name derived from the
    URI: Prefect requires a task's result storage to be a saved block, and every machine that points at the
    same workspace and API saves (and finds) the same one."""
    base = f"{workspace.uri()}/{folder}"
    block = _BLOCKS.get(base)
    if block is None:
        # gcsfs's experimental hierarchical-namespace layer asks the control plane for the bucket's layout on
        # every call it cannot cache (each call, against the emulator): the workspace only writes and reads
        # whole objects, so the classic filesystem is all it needs.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        from prefect.filesystems import RemoteFileSystem

        block = RemoteFileSystem(basepath=base)
        block.save(f"freezeflow-{folder}-{hashlib.sha256(base.encode()).hexdigest()[:16]}", overwrite=True)
        _BLOCKS[base] = block
    return block


LOCKS_VARIABLE = "FREEZEFLOW_LOCKS"
LOCK_HOLD_SECONDS = 6 * 3600.0  # FREEZEFLOW_LOCK_SECONDS: a lock a killed worker held expires after this
_LOCKS: dict[str, Any] = {}


def lock_manager() -> Any:
    """The lock manager ``FREEZEFLOW_LOCKS=redis://host:port/db`` names (one per process), else None."""
    url = os.environ.get(LOCKS_VARIABLE, "").strip()
    if not url:
        return None
    manager = _LOCKS.get(url)
    if manager is None:
        manager = _LOCKS[url] = _stage_lock_manager()(connection_url=url)
    return manager


def check_locks() -> None:
    """Redis answers a PING within 5 s when ``FREEZEFLOW_LOCKS`` is set: one line naming it, never a hang."""
    url = os.environ.get(LOCKS_VARIABLE, "").strip()
    if not url:
        return
    from tasks.core.errors import ParameterError, PermanentDestinationError

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ParameterError(f"{LOCKS_VARIABLE}={url!r}: expected redis://host:port/db")
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError(f"{LOCKS_VARIABLE} needs prefect-redis: pip install prefect-redis ({exc})") from exc
    shown = _without_password(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        client.ping()
        client.close()
    except redis.exceptions.AuthenticationError as exc:
        raise PermanentDestinationError(f"locks at {shown}: Redis refused the credentials ({exc}); fix "
                                        f"{LOCKS_VARIABLE}") from exc
    except (redis.exceptions.RedisError, OSError) as exc:
        reason = str(exc).split("\n")[0].rstrip(".")
        raise PermanentDestinationError(f"locks at {shown}: Redis does not answer ({reason}); start it, or unset "
                                        f"{LOCKS_VARIABLE} to run without locks") from exc


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=f"{user}{host}" + (f":{parts.port}" if parts.port else "")))


def _stage_lock_manager() -> Any:
    """prefect-redis's lock manager, with a hold timeout: Prefect takes stage locks without one, and a
    worker killed while holding one would otherwise block that stage on every machine forever."""
    from prefect_redis.locking import RedisLockManager

    class StageLockManager(RedisLockManager):
        def acquire_lock(self, key: str, holder: str, acquire_timeout: Any = None, hold_timeout: Any = None) -> bool:
            return super().acquire_lock(key, holder, acquire_timeout, hold_timeout or _hold_seconds())

        async def aacquire_lock(self, key: str, holder: str, acquire_timeout: Any = None,
                                hold_timeout: Any = None) -> bool:
            return await super().aacquire_lock(key, holder, acquire_timeout, hold_timeout or _hold_seconds())

    return StageLockManager


def _hold_seconds() -> float:
    text = os.environ.get("FREEZEFLOW_LOCK_SECONDS")
    return float(text) if text else LOCK_HOLD_SECONDS
