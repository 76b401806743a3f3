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
    cache policy's key storage at ``WORKSPACE/cache-keys``."""
    store = open_store()
    store.result_storage = result_storage()
    configured = stage.cache_policy.configure(key_storage=key_storage())
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
