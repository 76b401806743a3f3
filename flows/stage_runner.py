"""The stages every flow shares, and how they run: freeze and export side by side, then validate, then
upload; each stage's state and time recorded for the run report."""

from __future__ import annotations

import time
from typing import Any, Optional

from prefect.artifacts import create_markdown_artifact

from flows.params import SignatureParams, ValidationParams
from tasks.core import layout, workspace
from tasks.core.records import Checkpoint, RunSummary, StageRun
from tasks.core.report import run_markdown
from tasks.stages.export import export
from tasks.core.reference_inputs import describe_reference
from tasks.stages.freeze import freeze
from tasks.stages.sanitise import sanitise
from tasks.stages.upload import upload
from tasks.stages.validate import validate


def persisted(stage: Any, refresh: bool = False) -> Any:
    """A stage task pointed at the workspace's result storage (where its cache lives)."""
    return stage.with_options(result_storage=workspace.results_dir(), refresh_cache=refresh or None)


class StageClock:
    """Records each stage's final state name (Completed or Cached) and wall time, for the report."""

    def __init__(self) -> None:
        self.stages: list[StageRun] = []

    def record(self, name: str, state: Any, started: float) -> Any:
        self.stages.append(StageRun(name=name, state=state.name, seconds=time.monotonic() - started))
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
    side_by_side: bool = True,
    sanitise_graph: bool = True,
    fold_batch_norm: bool = False,
) -> RunSummary:
    """(sanitise →) freeze ∥ export → validate → upload; returns the run summary.

    ``side_by_side=False`` runs freeze then export inline, in the calling thread: for a conversion that
    is itself one task on a Dask worker, where submitting would hand the stages back to the cluster
    and park the worker's thread waiting on them.
    """
    assert checkpoint.interface is not None
    # A reference file that is missing or of the wrong kind fails here, before any stage runs.
    reference = describe_reference(validation.reference_inputs, validation.reference_inputs_file,
                                   validation.seed, validation.batch_size)
    if sanitise_graph and checkpoint.format == "tf1":
        checkpoint = clock.run("sanitise", persisted(sanitise, refresh), checkpoint, list(output_nodes or []))
    freeze_args = (checkpoint, list(output_nodes or []), freeze_engine, fold_batch_norm)
    export_args = (checkpoint, signature.input_key, signature.output_key)
    if side_by_side:
        started = time.monotonic()
        frozen_future = persisted(freeze, refresh).submit(*freeze_args)
        exported_future = persisted(export, refresh).submit(*export_args)
        frozen_future.wait()
        exported_future.wait()
        frozen = clock.record("freeze", frozen_future.state, started)
        exported = clock.record("export", exported_future.state, started)
    else:
        frozen = clock.run("freeze", persisted(freeze, refresh), *freeze_args)
        exported = clock.run("export", persisted(export, refresh), *export_args)
    report = clock.run("validate", persisted(validate, refresh), checkpoint, frozen, exported,
                       reference, validation.rtol, validation.atol,
                       report_key=layout.artifact_key(model_name, "validation"))
    publication = clock.run("upload", persisted(upload, refresh), destination, model_name, checkpoint.interface,
                            frozen, exported, report, parameters)
    return RunSummary(model_name=model_name, stages=tuple(clock.stages), checkpoint=checkpoint, frozen_graph=frozen,
                      saved_model=exported, validation=report, publication=publication)


def publish_report(summary: RunSummary) -> None:
    create_markdown_artifact(
        markdown=run_markdown(summary), key=layout.artifact_key(summary.model_name, "report"),
        description=f"freezeflow run report for {summary.model_name}",
    )
