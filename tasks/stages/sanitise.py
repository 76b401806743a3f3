"""Stage 2½, sanitise: a TF1 training graph rewritten for inference before freeze and export
(the work is :func:`tasks.tf.sanitising.sanitise_checkpoint`); an inference graph passes unchanged."""

from __future__ import annotations

from prefect import task

from tasks.core.records import Checkpoint
from tasks.stages.cache_policy import stage_policy
from tasks.tf.sanitising import sanitise_checkpoint


@task(
    name="sanitise",
    cache_policy=stage_policy("sanitise", __name__),
    result_serializer="json",
    persist_result=True,
    cache_result_in_memory=False,
)
def sanitise(checkpoint: Checkpoint, output_nodes: list[str]) -> Checkpoint:
    return sanitise_checkpoint(checkpoint, output_nodes)
