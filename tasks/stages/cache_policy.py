"""The Prefect cache policy every stage uses: a key on content and code, and cached records that prove their files.

The key is :func:`tasks.core.cache_keys.stage_key` of the stage's module: the content of the task's
inputs and the source of every project module the stage imports, found from its imports.

Before Prefect looks the key up, the policy reads the record stored under it and checks that the
files it names still hold their digests (a published version: that its manifest is still there; in a
``gs://`` workspace, that its objects' metadata still match, without reading their bytes). A record that
fails the check loses its cache key, so the lookup misses and the stage runs again instead of returning
a dangling path.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from prefect.cache_policies import CachePolicy

from tasks.core import workspace
from tasks.core.cache_keys import stage_key
from tasks.core.errors import StaleArtifactError

logger = logging.getLogger("freezeflow.cache")


@dataclass
class StagePolicy(CachePolicy):
    """Cache key = stage name + the code the stage's module runs + input content; stale cached records are dropped."""

    stage: str = ""
    module: str = ""  # the stage's module; its imports, transitively, decide which code is in the key
    verifier: Optional[Callable[[Any], None]] = field(default=None)
    ignore: tuple[str, ...] = ()  # arguments that only label the UI (artifact keys), never the result
    # The workspace's store (tasks.storage.workspace_store), handed in by tasks.stages.in_workspace when a flow
    # points the stage at its workspace. It is not imported here: how bytes are stored is not part of what a
    # stage computes, so it stays out of every stage's cache key.
    store: Any = None

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> Optional[str]:
        kept = {name: value for name, value in inputs.items() if name not in self.ignore}
        key = stage_key(self.stage, self.module, kept)
        self._drop_if_stale(key)
        return key

    def _drop_if_stale(self, key: str) -> None:
        """Read the record cached under ``key``, if any, and delete its cache key unless its artifacts are
        whole: local files are re-read; objects in a remote workspace are checked by their metadata."""
        if self.store is None or self.key_storage is None:
            return  # not pointed at a workspace (a task called on its own): Prefect's default caching
        from prefect.filesystems import LocalFileSystem
        from prefect.results import ResultStore

        keys = _block(self.key_storage)
        try:
            keys.read_path(key)
        except (FileNotFoundError, ValueError):
            return  # nothing cached under this key
        try:
            value = ResultStore(result_storage=_block(self.store.result_storage), metadata_storage=keys,
                                cache_result_in_memory=False).read(key).result
            (self.verifier or self.store.check_record)(value)
        except StaleArtifactError as exc:
            logger.warning("Cached %s result is stale (%s); running the stage again", self.stage, exc)
            self.store.delete_key(key)
        except Exception as exc:  # an unreadable record is as good as none: rebuild it
            logger.warning("Cached %s result %s is unreadable (%s); running the stage again", self.stage, key, exc)
            self.store.delete_key(key)


def _block(storage: Any) -> Any:
    from prefect.filesystems import LocalFileSystem

    return LocalFileSystem(basepath=str(storage)) if isinstance(storage, Path) else storage


def stage_policy(
    stage: str, module: str, *, verifier: Optional[Callable[[Any], None]] = None, ignore: tuple[str, ...] = ()
) -> StagePolicy:
    """The policy for ``stage``, whose ``@task`` is defined in ``module`` (pass ``__name__``)."""
    return StagePolicy(stage=stage, module=module, verifier=verifier, ignore=ignore)


def stage_task(
    name: str,
    *,
    verifier: Optional[Callable[[Any], None]] = None,
    ignore: tuple[str, ...] = (),
    **options: Any,
) -> Callable[[Callable[..., Any]], Any]:
    """``@task`` as every stage declares it: named ``name``, keyed by :class:`StagePolicy` on the code of
    the module that defines it, its result persisted as JSON (never pickled) and read back from storage
    rather than kept in memory. ``options`` (retries and the like) go to ``@task`` as they are.

    Pointed at a workspace (:func:`tasks.stages.workspace.in_workspace`), the stage's inputs are made local
    first (fetched into the scratch cache from a remote workspace), and its outputs are durable in the
    workspace before it returns, so before Prefect reports it Completed."""
    from prefect import task

    def decorate(fn: Callable[..., Any]) -> Any:
        policy = stage_policy(name, fn.__module__, verifier=verifier, ignore=ignore)

        @functools.wraps(fn)
        def in_the_workspace(*args: Any, **kwargs: Any) -> Any:
            from prefect.context import TaskRunContext

            context = TaskRunContext.get()
            store = getattr(getattr(context.task, "cache_policy", None), "store", None) if context else None
            if store is None:
                return fn(*args, **kwargs)
            store.materialise_all((args, kwargs))
            result = fn(*args, **kwargs)
            store.keep(result)
            return result

        return task(name=name, cache_policy=policy, result_serializer="json", persist_result=True,
                    cache_result_in_memory=False, **options)(in_the_workspace)

    return decorate


