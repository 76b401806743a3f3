"""The ``publish_model`` flow: train → checkpoint → freeze ∥ export → validate → upload."""

from __future__ import annotations

from typing import Optional

from prefect import flow

from flows.stage_plan import publish_stages
from flows.stage_runner import PrefectStages, in_run_workspace, publish_report
from flows import defaults
from flows.params import (
    CheckpointFormat,
    DestinationURI,
    FreezeEngine,
    ModelName,
    SignatureParams,
    TrainingParams,
    ValidationParams,
)
from tasks.core import layout
from tasks.storage.destinations import open_destination
from tasks.storage.uris import is_gs_uri
from tasks.tf.entrypoints import entrypoint_digest
from tasks.core.errors import ParameterError
from tasks.core.records import RunSummary
from tasks.stages.deploy import deploy
from tasks.vertex.deploy import VertexParams


@flow(name="publish_model", description="Train a TensorFlow model, freeze it, export a SavedModel, validate, publish.")
def publish_model(
    model_name: ModelName = defaults.TRAINED_MODEL_NAME,
    training: TrainingParams = TrainingParams(),
    checkpoint_format: CheckpointFormat = defaults.CHECKPOINT_FORMAT,
    signature: SignatureParams = SignatureParams(),
    validation: ValidationParams = ValidationParams(reference_inputs=list(defaults.GUIDE_REFERENCE_INPUTS)),
    destination: DestinationURI = defaults.DESTINATION,
    refresh_cache: bool = False,
    freeze_engine: FreezeEngine = defaults.FREEZE_ENGINE,
    fold_batch_norm: bool = False,
    vertex: VertexParams = VertexParams(),
    workspace: Optional[str] = None,
) -> RunSummary:
    """Run the whole pipeline; a second run with the same parameters is served from the cache.

    Args:
        model_name: Name of the model at the destination (DEST/MODEL/VERSION).
        training: How the model is built and trained (entrypoint, epochs, learning rate, seed, options).
        checkpoint_format: tf1 (the guide's Saver files) or tf2 (object-based).
        signature: Input and output keys of the SavedModel's serving_default signature.
        validation: Reference inputs (inline, a file, or generated) and the rtol/atol the formats must agree within.
        destination: A local folder or gs://bucket/prefix.
        refresh_cache: Run every stage even if a cached result exists.
        freeze_engine: TF1 freezing: stream (freezeflow's engine) or tf (TensorFlow's).
        fold_batch_norm: Fold inference batch norms into the preceding convolution or matmul of the frozen graph.
        vertex: Optional Vertex AI deployment of the published gs:// version.
        workspace: Where cache records and stage outputs live: a folder or gs://bucket/prefix (default: FREEZEFLOW_WORKSPACE, else the local .freezeflow).
    """
    with in_run_workspace(workspace):
        layout.check_model_name(model_name)
        if vertex.enabled and not is_gs_uri(destination):
            raise ParameterError(f"vertex.enabled needs a gs:// destination (Vertex AI reads models from Cloud Storage), got {destination!r}")
        open_destination(destination)  # a malformed destination fails before any work, not at upload
        digest = entrypoint_digest(training.entrypoint)  # fails fast on an entrypoint that does not import
        stages = PrefectStages(refresh=refresh_cache)
        summary = publish_stages(
            stages, model_name=model_name, training=training, entrypoint_digest=digest,
            checkpoint_format=checkpoint_format, signature=signature, validation=validation, destination=destination,
            freeze_engine=freeze_engine, fold_batch_norm=fold_batch_norm,
        )
        if vertex.enabled:
            deployment = stages.clock.run("deploy", deploy, summary.publication, vertex)
            summary = summary.model_copy(update={"stages": tuple(stages.stages), "deployment": deployment})
        publish_report(summary)
        return summary
