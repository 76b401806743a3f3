"""Stage 2½, sanitise: a TF1 training graph rewritten for inference before freeze and export
(the work is :func:`tasks.tf.sanitising.sanitise_checkpoint`); an inference graph passes unchanged."""

from __future__ import annotations


from tasks.core.records import Checkpoint
from tasks.stages.cache_policy import stage_task
from tasks.tf.sanitising import sanitise_checkpoint


@stage_task("sanitise")
def sanitise(checkpoint: Checkpoint, output_nodes: list[str]) -> Checkpoint:
    return sanitise_checkpoint(checkpoint, output_nodes)
