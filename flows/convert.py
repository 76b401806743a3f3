"""The ``convert_checkpoint`` flow, and the stages it shares with ``publish_model``: freeze and export
side by side, then validate, then upload."""

from __future__ import annotations

import time
from typing import Any, Optional

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.params import (
    DestinationURI,
    FreezeEngine,
    ModelName,
    SignatureParams,
    ValidationParams,
    parameters_record,
)
from tasks import layout, workspace
from tasks.checkpoint import describe_checkpoint
from tasks.destinations import open_destination
from tasks.export import export
from tasks.freeze import freeze
from tasks.records import Checkpoint
from tasks.report import run_markdown
from tasks.upload import upload
from tasks.validate import validate


def persisted(stage: Any, refresh: bool = False) -> Any:
    """A stage task pointed at the workspace's result storage (where its cache lives)."""
    return stage.with_options(result_storage=workspace.results_dir(), refresh_cache=refresh or None)


class StageClock:
    """Records each stage's final state name (Completed or Cached) and wall time, for the report."""

    def __init__(self) -> None:
        self.stages: list[dict[str, Any]] = []

    def record(self, name: str, state: Any, started: float) -> Any:
        self.stages.append({"name": name, "state": state.name, "seconds": time.monotonic() - started})
        return state.result()  # raises the stage's error, failing the flow with it

    def run(self, name: str, stage: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        return self.record(name, stage(*args, return_state=True, **kwargs), started)


def convert_stages(
    clock: StageClock,
    checkpoint: Checkpoint,
    *,
    model_name: str,
    output_nodes: Optional[list[str]],
    signature: SignatureParams,
    validation: ValidationParams,
    destination: str,
    parameters: dict[str, Any],
    refresh: bool = False,
    freeze_engine: str = "stream",
) -> dict[str, Any]:
    """freeze ∥ export → validate → upload; returns the run summary."""
    assert checkpoint.interface is not None
    started = time.monotonic()
    frozen_future = persisted(freeze, refresh).submit(checkpoint, list(output_nodes or []), freeze_engine)
    exported_future = persisted(export, refresh).submit(checkpoint, signature.input_key, signature.output_key)
    frozen_future.wait()
    exported_future.wait()
    frozen = clock.record("freeze", frozen_future.state, started)
    exported = clock.record("export", exported_future.state, started)
    report = clock.run("validate", persisted(validate, refresh), checkpoint, frozen, exported,
                       validation.reference_inputs, validation.tolerance,
                       report_key=layout.artifact_key(model_name, "validation"))
    publication = clock.run("upload", persisted(upload, refresh), destination, model_name, checkpoint.interface,
                            frozen, exported, report, parameters)
    summary = {
        "model_name": model_name,
        "stages": clock.stages,
        "checkpoint": checkpoint.model_dump(mode="json"),
        "frozen_graph": frozen.model_dump(mode="json"),
        "saved_model": exported.model_dump(mode="json"),
        "validation": report.model_dump(mode="json"),
        "publication": publication.model_dump(mode="json"),
    }
    return summary


def publish_report(summary: dict[str, Any]) -> None:
    create_markdown_artifact(
        markdown=run_markdown(summary), key=layout.artifact_key(summary["model_name"], "report"),
        description=f"freezeflow run report for {summary['model_name']}",
    )


@flow(name="convert_checkpoint", description="An existing TF1 or TF2 checkpoint → frozen graph + SavedModel → validated → published.")
def convert_checkpoint(
    checkpoint: str,
    output_nodes: Optional[list[str]] = None,
    entrypoint: Optional[str] = None,
    model_name: ModelName = "model",
    signature: SignatureParams = SignatureParams(),
    validation: ValidationParams = ValidationParams(),
    destination: DestinationURI = "published",
    refresh_cache: bool = False,
    freeze_engine: FreezeEngine = "stream",
) -> dict[str, Any]:
    """Convert the checkpoint at ``checkpoint`` (a prefix, or a folder with a ``checkpoint`` file).

    TF1 Saver checkpoints need their ``.meta`` graph and an output node; TF2 object-based checkpoints
    need the ``entrypoint`` that builds their model. The format is told apart from the files.

    Args:
        checkpoint: Checkpoint prefix (dir/model) or a folder with a 'checkpoint' file.
        output_nodes: Output nodes to keep (TF1); derived from the model's signature for TF2.
        entrypoint: For a TF2 checkpoint, package.module:function that builds its model.
        model_name: Name of the model at the destination (DEST/MODEL/VERSION).
        signature: Input and output keys of the SavedModel's serving_default signature.
        validation: Reference inputs and the tolerance the three formats must agree within.
        destination: A local folder or gs://bucket/prefix.
        refresh_cache: Run every stage even if a cached result exists.
        freeze_engine: TF1 freezing: stream (freezeflow's engine) or tf (TensorFlow's).
    """
    layout.check_model_name(model_name)
    open_destination(destination)  # a malformed destination fails before any work, not at upload
    record = describe_checkpoint(checkpoint, entrypoint, output_nodes)
    clock = StageClock()
    summary = convert_stages(
        clock, record, model_name=model_name, output_nodes=output_nodes, signature=signature,
        validation=validation, destination=destination, refresh=refresh_cache, freeze_engine=freeze_engine,
        parameters=parameters_record(checkpoint=checkpoint, output_nodes=output_nodes, entrypoint=entrypoint,
                                     model_name=model_name, signature=signature, validation=validation,
                                     destination=destination, freeze_engine=freeze_engine),
    )
    publish_report(summary)
    return summary


__all__ = ["convert_checkpoint", "convert_stages"]
