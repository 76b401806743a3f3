"""The cached fast path of ``freezeflow run`` and ``convert``: the plan's stages read from the cache, without Prefect.

When every stage of a run is cached, a Prefect run of it only starts Prefect and reads the records
(issue 13: about as long as six empty tasks). This module walks the same plan (:mod:`flows.stage_plan`),
keys each stage as its Prefect cache policy does (:func:`tasks.core.cache_keys.stage_key`, one function
for both), reads the record Prefect stored under that key in the workspace's key and result storage
(a local folder, or objects in a gs:// workspace), and checks it as the policy does, through the same
store: its files still hold their digests (in gs://, its objects' metadata, no bytes read); a
publication is still published.

The first miss, unreadable record or stale artifact ends the walk with ``None``: the caller then runs the
flow through Prefect, whose policy drops a stale record and rebuilds that stage, and which reports any
real error (a missing reference file, say) the way a run always does. Neither Prefect nor TensorFlow is
imported here. Runs started by a deployment never come here: only the command line does.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

from flows import stage_plan
from flows.params import SignatureParams, TrainingParams, ValidationParams
from tasks.core import records
from tasks.core.cache_keys import stage_key
from tasks.core.records import Record, RunSummary, StageRun
from tasks.storage.publishing import verify_publication
from tasks.tf.entrypoints import entrypoint_source_digest

logger = logging.getLogger("freezeflow.cache")

# How each stage's policy checks a cached record (tasks/stages/*.py: the verifier given to stage_task).
VERIFIERS: dict[str, Callable[[Any], None]] = {"upload": verify_publication}
CACHED = "Cached"  # the state name Prefect gives a stage served from the cache


class NotCached(Exception):
    """A stage has no usable cached record: the run has to go through Prefect."""


def read_result_record(key: str | Path) -> Any:
    """The value Prefect cached under ``key`` (a name, or its file in a local workspace), as a project record.

    The cache policy's key storage holds Prefect's metadata at ``WORKSPACE/cache-keys/KEY``
    (``{"storage_key": ..., "serializer": {"type": "json"}, "expiration": ...}``), written after the value
    itself, at ``WORKSPACE/results/KEY``: Prefect's JSON encoding of it, a Pydantic model as
    ``{"__class__": qualified name, "data": model_dump(mode="json")}``. Only records of
    :mod:`tasks.core.records` are read back.
    """
    from tasks.storage.workspace_store import open_store

    store, name = open_store(), Path(key).name
    stored = store.read_cache_object("cache-keys", name)
    if stored is None:
        raise NotCached(f"nothing cached under {name}")
    metadata = json.loads(stored)
    if metadata.get("expiration") is not None:  # the stages never set one; an expiring record is Prefect's call
        raise NotCached(f"{name} carries an expiration")
    if metadata["serializer"]["type"] != "json":
        raise NotCached(f"{name} is not a JSON result")
    # The result's own name, under this workspace's results: a storage key is a path (local or in the bucket).
    stored = store.read_cache_object("results", Path(metadata["storage_key"]).name)
    if stored is None:
        raise NotCached(f"{name} names a result that is not there")
    value = json.loads(stored)
    qualified = value.get("__class__", "") if isinstance(value, dict) else ""
    module, _, kind_name = qualified.rpartition(".")
    kind = getattr(records, kind_name, None) if module == records.__name__ else None
    if not (isinstance(kind, type) and issubclass(kind, Record)) or set(value) != {"__class__", "data"}:
        raise NotCached(f"{name} holds {qualified or type(value).__name__}, not a freezeflow record")
    return kind.model_validate(value["data"])


def cached_record(stage: str, inputs: dict[str, Any]) -> tuple[str, Any]:
    """The key of ``stage`` on ``inputs`` and its cached record, verified; raises :class:`NotCached`."""
    from tasks.storage.workspace_store import open_store

    key = stage_key(stage, stage_plan.STAGE_MODULES[stage], inputs)
    try:
        value = read_result_record(key)
        # As the stage's policy checks it: its own verifier, else the workspace store's check (local files
        # re-read; gs:// objects by their metadata, no bytes read).
        VERIFIERS.get(stage, open_store().check_record)(value)
    except NotCached as exc:
        raise NotCached(f"{stage}: {exc}") from None
    except Exception as exc:  # unreadable or stale: the Prefect run's policy drops it and rebuilds the stage
        raise NotCached(f"{stage}: cached record {key} does not hold ({type(exc).__name__}: {exc})") from exc
    return key, value


class CachedStages:
    """Runs the plan by reading each stage's cached record (a :class:`stage_plan.Stages`); records the keys."""

    def __init__(self) -> None:
        self.stages: list[StageRun] = []
        self.keys: dict[str, str] = {}

    def run(self, name: str, inputs: dict[str, Any], labels: Optional[dict[str, Any]] = None) -> Any:
        started = time.monotonic()
        self.keys[name], value = cached_record(name, inputs)
        self.stages.append(StageRun(name=name, state=CACHED, seconds=time.monotonic() - started))
        return value

    def run_side_by_side(self, first: tuple[str, dict[str, Any]],
                         second: tuple[str, dict[str, Any]]) -> tuple[Any, Any]:
        return self.run(*first), self.run(*second)


def _walk(plan: Callable[[CachedStages], RunSummary], stages: Optional[CachedStages]) -> Optional[RunSummary]:
    try:
        return plan(stages if stages is not None else CachedStages())
    except NotCached as exc:
        logger.debug("not served from the cache: %s", exc)
    except Exception as exc:  # anything else is for the Prefect run to report, as it always does
        logger.debug("not served from the cache: %s: %s", type(exc).__name__, exc)
    return None


def cached_publish(
    *,
    model_name: str,
    training: TrainingParams,
    checkpoint_format: str,
    signature: SignatureParams,
    validation: ValidationParams,
    destination: str,
    freeze_engine: str,
    fold_batch_norm: bool,
    stages: Optional[CachedStages] = None,
) -> Optional[RunSummary]:
    """What ``publish_model`` with these parameters would return if every stage is cached and holds; else None."""
    digest = entrypoint_source_digest(training.entrypoint)
    if digest is None:
        return None
    return _walk(lambda walker: stage_plan.publish_stages(
        walker, model_name=model_name, training=training, entrypoint_digest=digest,
        checkpoint_format=checkpoint_format, signature=signature, validation=validation, destination=destination,
        freeze_engine=freeze_engine, fold_batch_norm=fold_batch_norm,
    ), stages)


def cached_convert(
    *,
    checkpoint: str,
    output_nodes: Optional[list[str]],
    entrypoint: Optional[str],
    model_name: str,
    signature: SignatureParams,
    validation: ValidationParams,
    destination: str,
    freeze_engine: str,
    sanitise: bool,
    fold_batch_norm: bool,
    stages: Optional[CachedStages] = None,
) -> Optional[RunSummary]:
    """What ``convert_checkpoint`` would return for ``checkpoint`` if every stage is cached and holds; else
    None (also when this workspace has not described these checkpoint files before: that takes TensorFlow)."""

    def plan(walker: CachedStages) -> RunSummary:
        from tasks.tf.checkpoints import known_checkpoint  # the checkpoint reader: only convert needs it

        record = known_checkpoint(checkpoint, entrypoint, output_nodes)
        if record is None:
            raise NotCached(f"checkpoint {checkpoint} was not described with these files before")
        return stage_plan.convert_checkpoint_stages(
            walker, record, checkpoint=checkpoint, output_nodes=output_nodes, entrypoint=entrypoint,
            model_name=model_name, signature=signature, validation=validation, destination=destination,
            freeze_engine=freeze_engine, sanitise=sanitise, fold_batch_norm=fold_batch_norm,
        )

    return _walk(plan, stages)
