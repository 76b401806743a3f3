"""The cache policy every stage uses: keys on content and code, and cached records that prove their files.

Prefect's ``INPUTS`` policy hashes a path by its string and ``TASK_SOURCE`` hashes only the task
function's own source (field notes). Here a key is built from

* each input's *content*: records contribute their artifacts' digests, never their folders;
* the source of the stage's modules (the task and the plain functions it calls);
* the TensorFlow version is left out on purpose: it is recorded in every manifest instead.

Before Prefect looks the key up, the policy reads the record stored under it and checks that the
files it names still hold their digests (a published version: that its manifest is still there). A
record that fails the check is deleted, so the lookup misses and the stage runs again instead of
returning a dangling path.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from pydantic import BaseModel
from prefect.cache_policies import CachePolicy

from tasks import workspace
from tasks.errors import StaleArtifactError
from tasks.records import Artifact

logger = logging.getLogger("freezeflow.cache")


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


@dataclass
class StagePolicy(CachePolicy):
    """Cache key = stage name + stage code + input content; stale cached records are dropped."""

    stage: str = ""
    modules: tuple[str, ...] = ()
    verifier: Optional[Callable[[Any], None]] = field(default=None)
    ignore: tuple[str, ...] = ()  # arguments that only label the UI (artifact keys), never the result

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> Optional[str]:
        kept = {name: value for name, value in inputs.items() if name not in self.ignore}
        key = f"{self.stage}-{stage_token(self.stage, self.modules, kept)[:40]}"
        self._drop_if_stale(key)
        return key

    def _drop_if_stale(self, key: str) -> None:
        from prefect.results import ResultRecord

        path = workspace.results_dir() / key
        if not path.is_file():
            return
        try:
            value = ResultRecord.deserialize(path.read_bytes()).result
            (self.verifier or verify_record)(value)
        except StaleArtifactError as exc:
            logger.warning("Cached %s result is stale (%s); running the stage again", self.stage, exc)
            path.unlink(missing_ok=True)
        except Exception as exc:  # an unreadable record is as good as none: rebuild it
            logger.warning("Cached %s result %s is unreadable (%s); running the stage again", self.stage, path, exc)
            path.unlink(missing_ok=True)


def stage_policy(
    stage: str, *modules: str, verifier: Optional[Callable[[Any], None]] = None, ignore: tuple[str, ...] = ()
) -> StagePolicy:
    return StagePolicy(stage=stage, modules=tuple(modules), verifier=verifier, ignore=ignore)
