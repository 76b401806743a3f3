"""Stage 4, export: a SavedModel with tag ``serve`` and one ``serving_default`` predict signature
(the TensorFlow work is :func:`tasks.tf.saved_models.export_saved_model`)."""

from __future__ import annotations


from tasks.core.records import Checkpoint, ExportedModel
from tasks.stages.cache_policy import stage_task
from tasks.tf.saved_models import export_saved_model


@stage_task("export")
def export(checkpoint: Checkpoint, input_key: str, output_key: str) -> ExportedModel:
    return export_saved_model(checkpoint, input_key, output_key)
