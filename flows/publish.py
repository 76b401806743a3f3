"""The ``publish_model`` flow: train → checkpoint → freeze ∥ export → validate → upload."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.convert import StageClock, convert_stages, persisted, publish_report
from flows.params import (
    CheckpointFormat,
    DestinationURI,
    ModelName,
    SignatureParams,
    TrainingParams,
    ValidationParams,
    parameters_record,
)
from tasks import layout
from tasks.checkpoint import checkpoint as checkpoint_stage
from tasks.models import entrypoint_digest
from tasks.train import train


@flow(name="publish_model", description="Train a TensorFlow model, freeze it, export a SavedModel, validate, publish.")
def publish_model(
    model_name: ModelName = "linear",
    training: TrainingParams = TrainingParams(),
    checkpoint_format: CheckpointFormat = "tf1",
    signature: SignatureParams = SignatureParams(),
    validation: ValidationParams = ValidationParams(),
    destination: DestinationURI = "published",
    refresh_cache: bool = False,
) -> dict[str, Any]:
    """Run the whole pipeline; a second run with the same parameters is served from the cache."""
    layout.check_model_name(model_name)
    digest = entrypoint_digest(training.entrypoint)  # fails fast on an entrypoint that does not import
    clock = StageClock()
    trained = clock.run("train", persisted(train, refresh_cache), training.entrypoint, training.epochs,
                        training.learning_rate, training.seed, training.options, digest,
                        progress_key=layout.artifact_key(model_name, "training"))
    record = clock.run("checkpoint", persisted(checkpoint_stage, refresh_cache), trained, checkpoint_format)
    summary = convert_stages(
        clock, record, model_name=model_name, output_nodes=None, signature=signature, validation=validation,
        destination=destination, refresh=refresh_cache,
        parameters=parameters_record(model_name=model_name, training=training, checkpoint_format=checkpoint_format,
                                     signature=signature, validation=validation, destination=destination),
    )
    summary["losses"] = list(trained.losses)
    publish_report(summary)
    return summary
