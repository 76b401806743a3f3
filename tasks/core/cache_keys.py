"""Cache keys on content and code, and the check that a cached record's files still hold their digests.

No Prefect here: the stage layer's cache policy (:mod:`tasks.stages.cache_policy`) and anything that
wants to know a stage's key without Prefect compute it the same way. Prefect's ``INPUTS`` policy
hashes a path by its string and ``TASK_SOURCE`` hashes only the task function's own source (field
notes). Here a key is built from

* each input's *content*: records contribute their artifacts' digests, never their folders;
* the source of the stage's modules (the task and the plain functions it calls);
* the TensorFlow version is left out on purpose: it is recorded in every manifest instead.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from typing import Any

from pydantic import BaseModel

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


def code_digest(modules: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in modules:
        digest.update(inspect.getsource(importlib.import_module(name)).encode())
    return digest.hexdigest()


def stage_token(stage: str, modules: tuple[str, ...], inputs: dict[str, Any]) -> str:
    """The hex digest that names a stage's output: stage, code and input content."""
    return token_digest(stage, code_digest(modules), inputs)


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
