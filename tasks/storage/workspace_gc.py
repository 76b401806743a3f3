"""``freezeflow gc``: what a workspace no longer needs, found and (unless it is a dry run) removed.

* cache records (the key in ``cache-keys/`` and its value in ``results/``) older than the limit;
* stage outputs no remaining record names (``work/STAGE/TOKEN`` in a local workspace, ``artifacts/DIGEST``
  in a gs:// one): a record names its artifacts by workspace key, so this is a set difference;
* this machine's scratch cache past its size cap (least recently used first);
* at a publish destination (``--dest``), crash leftovers: ``Destination.crash_leftovers``.

Records are read as JSON (Prefect's encoding of a record is ``{"__class__": ..., "data": ...}``): any
dict with ``files`` and ``digest`` and a ``key`` names an artifact. Nothing here imports Prefect.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tasks.core import workspace
from tasks.storage.workspace_store import GCSWorkspaceStore, WorkspaceStore, open_store


@dataclass(frozen=True)
class Removal:
    what: str  # "record", "artifact", "scratch copy"
    where: str
    size: int


def referenced_keys(document: Any) -> Iterator[str]:
    """Every artifact key named inside a record's JSON."""
    if isinstance(document, dict):
        if "files" in document and "digest" in document and document.get("key"):
            yield str(document["key"])
        for value in document.values():
            yield from referenced_keys(value)
    elif isinstance(document, list):
        for value in document:
            yield from referenced_keys(value)


def collect(uri: str, older_than: float, dry_run: bool = False) -> list[Removal]:
    """Remove (or, with ``dry_run``, only list) what workspace ``uri`` and this machine's cache no longer need."""
    store = open_store(uri)
    with workspace.using(store.uri):
        removed = (_collect_gcs(store, older_than, dry_run) if isinstance(store, GCSWorkspaceStore)
                   else _collect_local(store, older_than, dry_run))
        overflow = [Removal("scratch copy", str(folder), size)
                    for folder, size in (workspace.evict(dry_run=True) if dry_run else workspace.evict())]
    return removed + overflow


def _collect_local(store: WorkspaceStore, older_than: float, dry_run: bool) -> list[Removal]:
    removed: list[Removal] = []
    keys_dir, results_dir = workspace.keys_dir(), workspace.results_dir()
    cutoff = time.time() - older_than
    kept: set[str] = set()
    for key_file in sorted(keys_dir.iterdir()):
        value = results_dir / key_file.name
        if key_file.stat().st_mtime < cutoff:
            size = key_file.stat().st_size + (value.stat().st_size if value.is_file() else 0)
            removed.append(Removal("record", key_file.name, size))
            if not dry_run:
                key_file.unlink(missing_ok=True)
                value.unlink(missing_ok=True)
            continue
        try:
            kept.update(referenced_keys(json.loads(value.read_bytes())))
        except (OSError, ValueError):
            continue
    work = workspace.local_root() / workspace.WORK
    for stage in sorted(work.iterdir()) if work.is_dir() else ():
        for folder in sorted(stage.iterdir()):
            key = f"{workspace.WORK}/{stage.name}/{folder.name}"
            if any(k == key or k.startswith(key + "/") for k in kept):
                continue
            removed.append(Removal("artifact", str(folder), workspace.folder_size(folder)))
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
    return removed


def _collect_gcs(store: GCSWorkspaceStore, older_than: float, dry_run: bool) -> list[Removal]:
    from datetime import datetime, timezone

    removed: list[Removal] = []
    bucket, client = store.gcs.bucket, store.gcs.client
    cutoff = datetime.now(timezone.utc).timestamp() - older_than
    kept: set[str] = set()
    for blob in client.list_blobs(bucket, prefix=store.object_name("cache-keys") + "/", **store._options()):
        key = blob.name.rsplit("/", 1)[1]
        value = bucket.blob(store.object_name("results", key))
        if blob.updated is not None and blob.updated.timestamp() < cutoff:
            removed.append(Removal("record", key, blob.size or 0))
            if not dry_run:
                blob.delete(**store._options())
                try:
                    value.delete(**store._options())
                except Exception:  # noqa: BLE001 - a value without a key is unreachable anyway
                    pass
            continue
        try:
            kept.update(referenced_keys(json.loads(value.download_as_bytes(**store._options()))))
        except Exception:  # noqa: BLE001 - an unreadable value protects nothing
            continue
    prefix = store.object_name(workspace.ARTIFACTS) + "/"
    sizes: dict[str, int] = {}
    blobs: dict[str, list[Any]] = {}
    for blob in client.list_blobs(bucket, prefix=prefix, **store._options()):
        digest = blob.name[len(prefix):].split("/", 1)[0]
        sizes[digest] = sizes.get(digest, 0) + (blob.size or 0)
        blobs.setdefault(digest, []).append(blob)
    for digest in sorted(sizes):
        if f"{workspace.ARTIFACTS}/{digest}" in kept:
            continue
        removed.append(Removal("artifact", f"{store.uri}/{workspace.ARTIFACTS}/{digest}", sizes[digest]))
        if not dry_run:
            for blob in blobs[digest]:
                blob.delete(**store._options())
    return removed


def parse_age(text: str, option: str = "--older-than") -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` (or a bare number of days) in seconds."""
    from tasks.core.errors import ParameterError

    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = text.strip().lower()
    unit = units.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 86400)
    except ValueError:
        raise ParameterError(f"{option} {text!r}: expected a number with d, h, m or s (30d)") from None
    if value < 0:
        raise ParameterError(f"{option} {text!r} must not be negative")
    return value
