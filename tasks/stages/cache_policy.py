"""The Prefect cache policy every stage uses: a key on content and code, and cached records that prove their files.

The key is :func:`tasks.core.cache_keys.stage_key` of the stage's module: the content of the task's
inputs and the source of every project module the stage imports, found from its imports.

Before Prefect looks the key up, the policy reads the record stored under it and checks that the
files it names still hold their digests (a published version: that its manifest is still there). A
record that fails the check is deleted, so the lookup misses and the stage runs again instead of
returning a dangling path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from prefect.cache_policies import CachePolicy

from tasks.core import workspace
from tasks.core.cache_keys import stage_key, verify_record
from tasks.core.errors import StaleArtifactError

logger = logging.getLogger("freezeflow.cache")


@dataclass
class StagePolicy(CachePolicy):
    """Cache key = stage name + the code the stage's module runs + input content; stale cached records are dropped."""

    stage: str = ""
    module: str = ""  # the stage's module; its imports, transitively, decide which code is in the key
    verifier: Optional[Callable[[Any], None]] = field(default=None)
    ignore: tuple[str, ...] = ()  # arguments that only label the UI (artifact keys), never the result

    def compute_key(
        self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> Optional[str]:
        kept = {name: value for name, value in inputs.items() if name not in self.ignore}
        key = stage_key(self.stage, self.module, kept)
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
    rather than kept in memory. ``options`` (retries and the like) go to ``@task`` as they are."""
    from prefect import task

    def decorate(fn: Callable[..., Any]) -> Any:
        policy = stage_policy(name, fn.__module__, verifier=verifier, ignore=ignore)
        return task(name=name, cache_policy=policy, result_serializer="json", persist_result=True,
                    cache_result_in_memory=False, **options)(fn)

    return decorate
