"""What a SOURCE names: the checkpoints found under a local folder or a gs:// prefix, or those listed in a
JSON Lines file; read as a stream, one folder (or one line) at a time, so a prefix of 10,000
checkpoints is never listed all at once. Also the worker's side: a gs:// checkpoint copied into the
workspace before it is converted.

A folder is a checkpoint when it holds a ``checkpoint`` state file, or an ``*.index`` with its
``*.meta`` (TF1 Saver files without a state file). Hidden folders (a ``.freezeflow`` workspace) are
not searched.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from tasks.core.errors import CheckpointError, ParameterError
from tasks.core.layout import check_model_name
from tasks.fleet.items import FleetItem, UniqueNames, model_name_for
from tasks.storage.uris import is_gs_uri, split_gs_uri

JSONL_SUFFIXES = (".jsonl", ".ndjson")
_ITEM_KEYS = {"checkpoint", "model_name", "output_nodes", "entrypoint"}


def is_checkpoint_folder(files: Iterable[str]) -> bool:
    names = set(files)
    if "checkpoint" in names:
        return True
    return any(n.endswith(".index") and n[: -len(".index")] + ".meta" in names for n in names)


def scan(sources: list[str], *, output_nodes: Optional[list[str]] = None,
         entrypoint: Optional[str] = None) -> Iterator[FleetItem]:
    """Every item the SOURCEs name, in order. ``output_nodes`` and ``entrypoint`` are the defaults for
    found checkpoints (a JSON Lines item may set its own)."""
    defaults = {"output_nodes": tuple(output_nodes) if output_nodes else None, "entrypoint": entrypoint or None}
    for source in sources:
        if is_gs_uri(source):
            if source.endswith(JSONL_SUFFIXES):
                yield from _jsonl_items(source, _gcs_lines(source), None, defaults)
            else:
                yield from _found(source, _walk_gcs(source), defaults)
            continue
        if "://" in source:
            raise ParameterError(f"SOURCE {source!r}: only local paths and gs://bucket/prefix are supported")
        path = Path(source).expanduser()
        if path.is_file():
            yield from _jsonl_items(str(path), _file_lines(path), path.resolve().parent, defaults)
        elif path.is_dir():
            yield from _found(source, _walk_local(path.resolve()), defaults)
        else:
            raise ParameterError(f"SOURCE {source} does not exist; pass a folder of checkpoints, a gs:// prefix "
                                 "or a JSON Lines file")


def check_batch(sources: list[str], *, output_nodes: Optional[list[str]] = None,
                entrypoint: Optional[str] = None) -> int:
    """Read every SOURCE once before any work starts: every line well-formed, every model name valid and
    claimed once, at least one checkpoint. Keeps only the names, so memory grows with the batch's names,
    not its records. Returns the number of items."""
    names = UniqueNames()
    for item in scan(sources, output_nodes=output_nodes, entrypoint=entrypoint):
        names.claim(item)
    if not len(names):
        raise ParameterError(f"SOURCE {' '.join(sources)} holds no checkpoint (a folder with a 'checkpoint' file, "
                             "or an .index with its .meta); nothing to convert")
    return len(names)


def _found(source: str, folders: Iterator[str], defaults: dict[str, Any]) -> Iterator[FleetItem]:
    for folder in folders:
        yield FleetItem(checkpoint=folder, model_name=model_name_for(folder, is_folder=True), origin=folder, **defaults)


def _walk_local(root: Path) -> Iterator[str]:
    for folder, dirs, files in os.walk(root, onerror=_raise):
        if is_checkpoint_folder(files):
            dirs[:] = []  # a checkpoint folder's own subfolders hold no other checkpoint
            yield folder
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))


def _raise(error: OSError) -> None:
    raise ParameterError(f"SOURCE folder {error.filename} cannot be read ({error.strerror})")


def _file_lines(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as handle:
            yield from handle
    except UnicodeDecodeError as exc:
        raise ParameterError(f"SOURCE {path} is not a UTF-8 JSON Lines file ({exc.reason})") from exc
    except OSError as exc:
        raise ParameterError(f"SOURCE {path} cannot be read ({exc.strerror})") from exc


def _jsonl_items(name: str, lines: Iterable[str], base: Optional[Path],
                 defaults: dict[str, Any]) -> Iterator[FleetItem]:
    """Items from JSON Lines; a malformed line is refused with its number. Relative local checkpoint
    paths resolve against the file's folder, so a listing can travel with its checkpoints."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise ParameterError(f"SOURCE {name} line {number} is not JSON ({exc}); one object per line, like "
                                 '{"checkpoint": "runs/a", "output_nodes": ["y"]}') from exc
        yield _item_from_entry(entry, where, name, number, base, defaults)


def _item_from_entry(entry: Any, where: str, name: str, number: int, base: Optional[Path],
                     defaults: dict[str, Any]) -> FleetItem:
    def bad(problem: str) -> ParameterError:
        return ParameterError(f"SOURCE {name} line {number}: {problem}")

    if not isinstance(entry, dict):
        raise bad(f"expected a JSON object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _ITEM_KEYS)
    if unknown:
        raise bad(f"unknown key {unknown[0]!r}; an item has {', '.join(sorted(_ITEM_KEYS))}")
    checkpoint = entry.get("checkpoint")
    if not isinstance(checkpoint, str) or not checkpoint.strip():
        raise bad('"checkpoint" (a path or gs:// URI) is missing')
    nodes = entry.get("output_nodes", defaults["output_nodes"])
    if nodes is not None and (not isinstance(nodes, list | tuple) or not all(isinstance(n, str) and n for n in nodes)):
        raise bad('"output_nodes" must be a list of node names')
    entrypoint = entry.get("entrypoint", defaults["entrypoint"])
    if entrypoint is not None and (not isinstance(entrypoint, str) or ":" not in entrypoint):
        raise bad('"entrypoint" must be package.module:function')
    if not is_gs_uri(checkpoint):
        if "://" in checkpoint:
            raise bad(f"checkpoint {checkpoint!r}: only local paths and gs:// URIs are supported")
        local = Path(checkpoint).expanduser()
        if not local.is_absolute():
            if base is None:
                raise bad(f"checkpoint {checkpoint!r} is relative; a gs:// listing needs absolute paths or gs:// URIs")
            local = base / local
        checkpoint = os.path.normpath(local)
    model = entry.get("model_name")
    try:
        if model is None:
            model = model_name_for(checkpoint, is_folder=is_gs_uri(checkpoint) or Path(checkpoint).is_dir())
        elif not isinstance(model, str):
            raise ParameterError(f"model_name must be a string, got {model!r}")
        else:
            check_model_name(model)
    except ParameterError as exc:
        raise bad(str(exc)) from exc
    return FleetItem(checkpoint=checkpoint, model_name=model, output_nodes=tuple(nodes) if nodes else None,
                     entrypoint=entrypoint, origin=where)


# --- gs:// --------------------------------------------------------------------------------------


def _split(uri: str) -> tuple[str, str]:
    gs = split_gs_uri(uri)
    if not gs.bucket:
        raise ParameterError(f"SOURCE {uri!r} names no bucket; use gs://bucket/prefix")
    return gs.bucket, gs.path


def _gcs_client() -> Any:
    try:
        from google.cloud import storage
    except ImportError as exc:
        raise ImportError(f"gs:// sources need google-cloud-storage: pip install 'freezeflow[gcs]' ({exc})") from exc
    return storage.Client()  # honours STORAGE_EMULATOR_HOST; Application Default Credentials otherwise


def _gcs_call(what: str, call: Any) -> Any:
    from google.api_core import exceptions as api_exceptions

    try:
        return call()
    except api_exceptions.NotFound as exc:
        raise ParameterError(f"{what}: not found ({exc.message})") from exc
    except api_exceptions.GoogleAPIError as exc:
        raise ParameterError(f"{what}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from exc


def _walk_gcs(uri: str) -> Iterator[str]:
    """Checkpoint folders under a prefix, one folder level listed at a time (delimiter '/')."""
    bucket, prefix = _split(uri)
    client = _gcs_client()
    pending = [prefix.rstrip("/") + "/" if prefix else ""]
    while pending:
        folder = pending.pop(0)
        pages = client.list_blobs(bucket, prefix=folder, delimiter="/")
        files = _gcs_call(f"SOURCE gs://{bucket}/{folder}", lambda: [b.name[len(folder):] for b in pages])
        if is_checkpoint_folder(files):
            yield f"gs://{bucket}/{folder.rstrip('/')}"
        else:
            pending[:0] = sorted(pages.prefixes)  # depth first, in name order, like the local walk


def _gcs_lines(uri: str) -> Iterator[str]:
    bucket, name = _split(uri)
    blob = _gcs_client().bucket(bucket).blob(name)
    with _gcs_call(f"SOURCE {uri}", lambda: blob.open("r", encoding="utf-8")) as handle:
        yield from handle


def localise(checkpoint: str, workspace_dir: Path) -> str:
    """A local path for ``checkpoint``: itself, or for gs:// its folder's files copied into the workspace,
    in a folder named after their names and generations (a changed object is copied afresh)."""
    if not is_gs_uri(checkpoint):
        return checkpoint
    bucket, prefix = _split(checkpoint)
    folder = prefix.rstrip("/") + "/"
    client = _gcs_client()
    blobs = [b for b in _gcs_call(f"checkpoint {checkpoint}", lambda: list(client.list_blobs(bucket, prefix=folder,
                                                                                          delimiter="/")))]
    if not blobs:
        raise CheckpointError(f"checkpoint {checkpoint} holds no files")
    token = hashlib.sha256(json.dumps(sorted((b.name, b.generation) for b in blobs)).encode()).hexdigest()[:24]
    target = workspace_dir / "sources" / token
    if not target.is_dir():
        from tasks.core import workspace

        with workspace.building(target) as scratch:
            for blob in blobs:
                _gcs_call(f"checkpoint {checkpoint}",
                          lambda: blob.download_to_filename(str(scratch / blob.name[len(folder):])))
    return str(target)
