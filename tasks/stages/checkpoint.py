"""Stage 2, checkpoint: write a trained model as a TF1 Saver or TF2 object-based checkpoint
(the TensorFlow work is :func:`tasks.tf.checkpoints.write_checkpoint`)."""

from __future__ import annotations

from prefect import task

from tasks.core.names import CheckpointFormat
from tasks.core.records import Checkpoint, TrainedModel
from tasks.stages.cache_policy import stage_policy
from tasks.tf.checkpoints import write_checkpoint


@task(
    name="checkpoint",
    cache_policy=stage_policy("checkpoint", __name__),
    result_serializer="json",
    persist_result=True,
    cache_result_in_memory=False,
)
def checkpoint(trained: TrainedModel, fmt: CheckpointFormat) -> Checkpoint:
    return write_checkpoint(trained, fmt)
