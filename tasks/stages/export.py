"""Stage 4, export: a SavedModel with tag ``serve`` and one ``serving_default`` predict signature
(the TensorFlow work is :func:`tasks.tf.saved_models.export_saved_model`)."""

from __future__ import annotations

from prefect import task

from tasks.core.records import Checkpoint, ExportedModel
from tasks.stages.cache_policy import stage_policy
from tasks.tf.saved_models import export_saved_model


@task(
    name="export",
    cache_policy=stage_policy("export", __name__),
    result_serializer="json",
    persist_result=True,
    cache_result_in_memory=False,
)
def export(checkpoint: Checkpoint, input_key: str, output_key: str) -> ExportedModel:
    return export_saved_model(checkpoint, input_key, output_key)
