"""The Prefect cache policy every stage uses: a key on content and code, and cached records that prove their files.

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
from tasks.core.cache_keys import stage_token, verify_record
from tasks.core.errors import StaleArtifactError

logger = logging.getLogger("freezeflow.cache")


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
