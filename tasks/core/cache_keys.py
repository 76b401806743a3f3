"""Cache keys on content and code, and the check that a cached record's files still hold their digests.

No Prefect here: the stage layer's cache policy (:mod:`tasks.stages.cache_policy`) and anything that
wants to know a stage's key without Prefect compute it the same way. Prefect's ``INPUTS`` policy
hashes a path by its string and ``TASK_SOURCE`` hashes only the task function's own source (field
notes). Here a key is built from

* each input's *content*: records contribute their artifacts' digests, never their folders;
* the source of every project module the stage's module imports, transitively, function-local
  imports included (:mod:`tasks.core.imports` reads them with ``ast``): a fix anywhere in the code a
  stage runs changes its key, and no list of modules is kept by hand;
* the TensorFlow version is left out on purpose: it is recorded in every manifest instead.

:func:`stage_key` is the key Prefect's cache policy uses; it imports neither Prefect nor TensorFlow
and reads each source file once per process, so a command can compute keys without either.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tasks.core.imports import PROJECT_PACKAGES, PROJECT_ROOT, closure, module_file
from tasks.core.records import Artifact


def content_token(value: Any) -> Any:
    """A JSON-able summary of ``value`` that changes when its content changes and not when its paths do."""
    if isinstance(value, Artifact):
        return {"artifact": value.digest}
    if isinstance(value, BaseModel):
        return {name: content_token(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): content_token(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [content_token(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot build a cache key from a {type(value).__name__}; pass a record or plain values")


def token_digest(*values: Any) -> str:
    text = json.dumps([content_token(v) for v in values], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=None)
def code_digest(module: str, root: Path = PROJECT_ROOT) -> str:
    """Digest of the source of ``module`` and every project module it imports, transitively.

    Cached per process on purpose: a process runs the code it loaded, not what is on disk later. Finding
    the imports means parsing every module in the closure (a quarter of a second for a stage), so the
    digests are also remembered in the workspace under a digest of every project source file: any edit
    anywhere misses that memo, and an unchanged tree reads the digests back instead of parsing.
    """
    tree = source_tree_digest(root)
    memo = _read_memo(root, tree)
    if module in memo:
        return memo[module]
    digest = hashlib.sha256()
    for name in closure(module, root):
        path = module_file(name, root)
        assert path is not None
        source = path.read_bytes()
        digest.update(f"{name}\n{len(source)}\n".encode())  # the boundary between files is part of the key
        digest.update(source)
    _write_memo(root, tree, {**memo, module: digest.hexdigest()})
    return digest.hexdigest()


def source_tree_digest(root: Path = PROJECT_ROOT) -> str:
    """Digest of every project source file under ``root``: their paths and bytes (a few milliseconds)."""
    digest = hashlib.sha256()
    for package in PROJECT_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            source = path.read_bytes()
            digest.update(f"{path.relative_to(root).as_posix()}\n{len(source)}\n".encode())
            digest.update(source)
    return digest.hexdigest()


def _memo_path() -> Path:
    from tasks.core import workspace

    return workspace.home() / "code-digests.json"


def _read_memo(root: Path, tree: str) -> dict[str, str]:
    try:
        memo = json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(memo, dict) or memo.get("root") != str(root) or memo.get("tree") != tree:
        return {}
    modules = memo.get("modules")
    return {k: v for k, v in modules.items() if isinstance(v, str)} if isinstance(modules, dict) else {}


def _write_memo(root: Path, tree: str, modules: dict[str, str]) -> None:
    import os
    import uuid

    path = _memo_path()
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        scratch.write_text(json.dumps({"root": str(root), "tree": tree, "modules": modules}, sort_keys=True))
        os.replace(scratch, path)  # whole or not at all; two writers at once lose an entry, never a file
    except OSError:
        scratch.unlink(missing_ok=True)  # an unwritable workspace only costs the next process a parse


def stage_token(stage: str, module: str, inputs: dict[str, Any], root: Path = PROJECT_ROOT) -> str:
    """The hex digest that names a stage's output: stage, the code ``module`` runs, input content."""
    return token_digest(stage, code_digest(module, root), inputs)


def stage_key(stage: str, module: str, inputs: dict[str, Any], root: Path = PROJECT_ROOT) -> str:
    """The cache key of ``stage`` whose task lives in ``module``, for these task inputs.

    The Prefect policy (:mod:`tasks.stages.cache_policy`) returns exactly this; anything else that
    wants to know whether a stage is cached computes it the same way, without Prefect.
    """
    return f"{stage}-{stage_token(stage, module, inputs, root)[:40]}"


def verify_record(value: Any) -> None:
    """Raise :class:`StaleArtifactError` if any artifact inside ``value`` no longer matches its digest."""
    if isinstance(value, Artifact):
        value.verify()
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            verify_record(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            verify_record(item)
