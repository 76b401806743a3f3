"""The plan's stages (:mod:`flows.stage_plan`) run as Prefect tasks: freeze and export side by side, then
validate, then upload; each stage's state and time recorded for the run report."""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator, Optional

from prefect.artifacts import create_markdown_artifact

from flows import stage_plan
from flows.params import SignatureParams, ValidationParams
from tasks.core import layout, workspace
from tasks.core.records import Checkpoint, RunSummary, StageRun
from tasks.core.report import run_markdown
from tasks.stages.checkpoint import checkpoint as checkpoint_stage
from tasks.stages.export import export
from tasks.stages.freeze import freeze
from tasks.stages.sanitise import sanitise
from tasks.stages.train import train
from tasks.stages.upload import upload
from tasks.stages.validate import validate
from tasks.stages.workspace import check_locks, in_workspace
from tasks.storage.workspace_store import open_store


def persisted(stage: Any, refresh: bool = False) -> Any:
    """A stage task pointed at the workspace's result and cache-key storage (where its cache lives)."""
    return in_workspace(stage, refresh)


@contextmanager
def in_run_workspace(uri: Optional[str]) -> Iterator[None]:
    """Run the block against workspace ``uri`` (a flow's ``workspace`` parameter; None: FREEZEFLOW_WORKSPACE or
    the local home), after checking that it can be used: a missing bucket, a refused permission, an
    unreachable host or unreachable locks fail here with one line, before any stage runs."""
    open_store(uri).check()
    check_locks()
    with workspace.using(uri) if uri else nullcontext():
        yield


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


class PrefectStages:
    """Runs the plan's stages (:mod:`flows.stage_plan`) as Prefect tasks, each cached in the workspace.

    ``side_by_side=False`` runs freeze then export inline, in the calling thread: for a conversion that
    is itself one task on a Dask worker, where submitting would hand the stages back to the cluster
    and park the worker's thread waiting on them.
    """

    TASKS = {"train": train, "checkpoint": checkpoint_stage, "sanitise": sanitise, "freeze": freeze,
             "export": export, "validate": validate, "upload": upload}

    def __init__(self, clock: Optional[StageClock] = None, refresh: bool = False, side_by_side: bool = True) -> None:
        self.clock = clock or StageClock()
        self.refresh = refresh
        self.side_by_side = side_by_side

    @property
    def stages(self) -> list[StageRun]:
        return self.clock.stages

    def task(self, name: str) -> Any:
        return persisted(self.TASKS[name], self.refresh)

    def run(self, name: str, inputs: dict[str, Any], labels: Optional[dict[str, Any]] = None) -> Any:
        return self.clock.run(name, self.task(name), **inputs, **(labels or {}))

    def run_side_by_side(self, first: tuple[str, dict[str, Any]],
                         second: tuple[str, dict[str, Any]]) -> tuple[Any, Any]:
        if not self.side_by_side:
            return self.run(*first), self.run(*second)
        started = time.monotonic()
        futures = [self.task(name).submit(**inputs) for name, inputs in (first, second)]
        for future in futures:
            future.wait()
        return tuple(self.clock.record(name, future.state, started)  # type: ignore[return-value]
                     for (name, _), future in zip((first, second), futures))


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
    """(sanitise →) freeze ∥ export → validate → upload as Prefect tasks; returns the run summary
    (the stages and their inputs are :func:`flows.stage_plan.convert_stages`)."""
    return stage_plan.convert_stages(
        PrefectStages(clock, refresh, side_by_side), checkpoint, model_name=model_name, output_nodes=output_nodes,
        signature=signature, validation=validation, destination=destination, parameters=parameters,
        freeze_engine=freeze_engine, sanitise_graph=sanitise_graph, fold_batch_norm=fold_batch_norm,
    )


def publish_report(summary: RunSummary) -> None:
    create_markdown_artifact(
        markdown=run_markdown(summary), key=layout.artifact_key(summary.model_name, "report"),
        description=f"freezeflow run report for {summary.model_name}",
    )
