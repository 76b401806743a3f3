"""Stage 2, checkpoint: write a trained model as a TF1 Saver or TF2 object-based checkpoint
(the TensorFlow work is :func:`tasks.tf.checkpoints.write_checkpoint`)."""

from __future__ import annotations


from tasks.core.names import CheckpointFormat
from tasks.core.records import Checkpoint, TrainedModel
from tasks.stages.cache_policy import stage_task
from tasks.tf.checkpoints import write_checkpoint


@stage_task("checkpoint")
def checkpoint(trained: TrainedModel, fmt: CheckpointFormat) -> Checkpoint:
    return write_checkpoint(trained, fmt)
