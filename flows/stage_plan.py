"""Which stage runs on what, and in which order: the pipeline's one description, with no Prefect in it.

train → checkpoint → [sanitise, a TF1 checkpoint handed in] → freeze ∥ export → validate → upload.

Two things run this plan through a :class:`Stages`: the flows, with each stage a cached Prefect task
(:mod:`flows.stage_runner`), and the cached fast path of ``freezeflow run``/``convert``
(:mod:`flows.cached_run`), which only reads each stage's cached record. Because both call each stage
with the inputs built here, and both key them with :func:`tasks.core.cache_keys.stage_key`, they look
up the same keys. Arguments that only label the Prefect UI (artifact keys) go apart, as ``labels``:
the stages' cache policies ignore them.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from flows.params import SignatureParams, TrainingParams, ValidationParams, parameters_record
from tasks.core import layout
from tasks.core.records import Checkpoint, RunSummary, StageRun
from tasks.core.reference_inputs import describe_reference

# The module each stage's @task lives in: its cache policy keys the stage on that module's code.
STAGE_MODULES = {name: f"tasks.stages.{name}"
                 for name in ("train", "checkpoint", "sanitise", "freeze", "export", "validate", "upload")}
# The arguments of each stage that only label the UI; its policy leaves them out of the key.
LABELS = {"train": ("progress_key",), "validate": ("report_key",)}


class Stages(Protocol):
    """Runs stages by name and remembers how each ended (a :class:`StageRun` per stage, in order)."""

    stages: list[StageRun]

    def run(self, name: str, inputs: dict[str, Any], labels: Optional[dict[str, Any]] = None) -> Any:
        """Run stage ``name`` on ``inputs`` (and UI ``labels``); return its record or raise its error."""

    def run_side_by_side(self, first: tuple[str, dict[str, Any]],
                         second: tuple[str, dict[str, Any]]) -> tuple[Any, Any]:
        """Run two independent stages, at the same time where the runner can; return both records."""


def publish_stages(
    stages: Stages,
    *,
    model_name: str,
    training: TrainingParams,
    entrypoint_digest: str,
    checkpoint_format: str,
    signature: SignatureParams,
    validation: ValidationParams,
    destination: str,
    freeze_engine: str,
    fold_batch_norm: bool,
) -> RunSummary:
    """``publish_model``'s stages: train → checkpoint → freeze ∥ export → validate → upload."""
    trained = stages.run(
        "train",
        {"entrypoint": training.entrypoint, "epochs": training.epochs, "learning_rate": training.learning_rate,
         "seed": training.seed, "options": training.options, "entrypoint_digest": entrypoint_digest},
        labels={"progress_key": layout.artifact_key(model_name, "training")},
    )
    record = stages.run("checkpoint", {"trained": trained, "fmt": checkpoint_format})
    summary = convert_stages(
        stages, record, model_name=model_name, output_nodes=None, signature=signature, validation=validation,
        destination=destination, freeze_engine=freeze_engine,
        sanitise_graph=False,  # the checkpoint stage writes the serving function's graph: nothing to sanitise
        fold_batch_norm=fold_batch_norm,
        parameters=parameters_record(model_name=model_name, training=training, checkpoint_format=checkpoint_format,
                                     signature=signature, validation=validation, destination=destination,
                                     freeze_engine=freeze_engine, fold_batch_norm=fold_batch_norm),
    )
    return summary.model_copy(update={"losses": tuple(trained.losses)})


def convert_checkpoint_stages(
    stages: Stages,
    record: Checkpoint,
    *,
    checkpoint: str,
    output_nodes: Optional[list[str]],
    entrypoint: Optional[str],
    model_name: str,
    signature: SignatureParams,
    validation: ValidationParams,
    destination: str,
    freeze_engine: str,
    sanitise: bool,
    fold_batch_norm: bool,
) -> RunSummary:
    """``convert_checkpoint``'s stages for the checkpoint ``record`` describes (``checkpoint`` as the user named it)."""
    return convert_stages(
        stages, record, model_name=model_name, output_nodes=output_nodes, signature=signature,
        validation=validation, destination=destination, freeze_engine=freeze_engine,
        sanitise_graph=sanitise, fold_batch_norm=fold_batch_norm,
        parameters=parameters_record(checkpoint=checkpoint, checkpoint_digest=record.artifact.digest,
                                     output_nodes=output_nodes, entrypoint=entrypoint, model_name=model_name,
                                     signature=signature, validation=validation, destination=destination,
                                     freeze_engine=freeze_engine, sanitise=sanitise,
                                     fold_batch_norm=fold_batch_norm),
    )


def convert_stages(
    stages: Stages,
    checkpoint: Checkpoint,
    *,
    model_name: str,
    output_nodes: Optional[list[str]],
    signature: SignatureParams,
    validation: ValidationParams,
    destination: str,
    parameters: dict[str, Any],
    freeze_engine: str = "stream",
    sanitise_graph: bool = True,
    fold_batch_norm: bool = False,
) -> RunSummary:
    """(sanitise →) freeze ∥ export → validate → upload; returns the run summary."""
    assert checkpoint.interface is not None
    # A reference file that is missing or of the wrong kind fails here, before any stage runs.
    reference = describe_reference(validation.reference_inputs, validation.reference_inputs_file,
                                   validation.seed, validation.batch_size)
    nodes = list(output_nodes or [])
    if sanitise_graph and checkpoint.format == "tf1":
        checkpoint = stages.run("sanitise", {"checkpoint": checkpoint, "output_nodes": nodes})
    frozen, exported = stages.run_side_by_side(
        ("freeze", {"checkpoint": checkpoint, "output_nodes": nodes, "engine": freeze_engine,
                    "fold_batch_norm": fold_batch_norm}),
        ("export", {"checkpoint": checkpoint, "input_key": signature.input_key, "output_key": signature.output_key}),
    )
    report = stages.run(
        "validate",
        {"checkpoint": checkpoint, "frozen": frozen, "exported": exported, "reference": reference,
         "rtol": validation.rtol, "atol": validation.atol},
        labels={"report_key": layout.artifact_key(model_name, "validation")},
    )
    publication = stages.run(
        "upload",
        {"destination": destination, "model_name": model_name, "interface": checkpoint.interface, "frozen": frozen,
         "exported": exported, "report": report, "parameters": parameters},
    )
    return RunSummary(model_name=model_name, stages=tuple(stages.stages), checkpoint=checkpoint, frozen_graph=frozen,
                      saved_model=exported, validation=report, publication=publication)
