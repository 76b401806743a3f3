"""The ``convert_checkpoint`` flow: an existing TF1 or TF2 checkpoint through the shared stages."""

from __future__ import annotations

from typing import Optional

from prefect import flow

from flows import defaults
from flows.params import (
    DestinationURI,
    FreezeEngine,
    ModelName,
    SignatureParams,
    ValidationParams,
)
from flows.stage_plan import convert_checkpoint_stages
from flows.stage_runner import PrefectStages, in_run_workspace, publish_report
from tasks.core import layout
from tasks.core.records import RunSummary
from tasks.tf.checkpoints import describe_checkpoint
from tasks.storage.destinations import open_destination


@flow(name="convert_checkpoint", description="An existing TF1 or TF2 checkpoint → frozen graph + SavedModel → validated → published.")
def convert_checkpoint(
    checkpoint: str,
    output_nodes: Optional[list[str]] = None,
    entrypoint: Optional[str] = None,
    model_name: ModelName = defaults.CONVERTED_MODEL_NAME,
    signature: SignatureParams = SignatureParams(),
    validation: ValidationParams = ValidationParams(),
    destination: DestinationURI = defaults.DESTINATION,
    refresh_cache: bool = False,
    freeze_engine: FreezeEngine = defaults.FREEZE_ENGINE,
    sanitise: bool = True,
    fold_batch_norm: bool = False,
    workspace: Optional[str] = None,
) -> RunSummary:
    """Convert the checkpoint at ``checkpoint`` (a prefix, or a folder with a ``checkpoint`` file).

    TF1 Saver checkpoints need their ``.meta`` graph and an output node; TF2 object-based checkpoints
    need the ``entrypoint`` that builds their model. The format is told apart from the files.

    Args:
        checkpoint: Checkpoint prefix (dir/model) or a folder with a 'checkpoint' file.
        output_nodes: Output nodes to keep (TF1); derived from the model's signature for TF2.
        entrypoint: For a TF2 checkpoint, package.module:function that builds its model.
        model_name: Name of the model at the destination (DEST/MODEL/VERSION).
        signature: Input and output keys of the SavedModel's serving_default signature.
        validation: Reference inputs (inline, a file, or generated) and the rtol/atol the formats must agree within.
        destination: A local folder or gs://bucket/prefix.
        refresh_cache: Run every stage even if a cached result exists.
        freeze_engine: TF1 freezing: stream (freezeflow's engine) or tf (TensorFlow's).
        sanitise: Rewrite a TF1 training graph for inference (learning phase, batch norm, dropout, optimiser).
        fold_batch_norm: Fold inference batch norms into the preceding convolution or matmul of the frozen graph.
        workspace: Where cache records and stage outputs live: a folder or gs://bucket/prefix (default: FREEZEFLOW_WORKSPACE, else the local .freezeflow).
    """
    with in_run_workspace(workspace):
        layout.check_model_name(model_name)
        open_destination(destination)  # a malformed destination fails before any work, not at upload
        record = describe_checkpoint(checkpoint, entrypoint, output_nodes)
        summary = convert_checkpoint_stages(
            PrefectStages(refresh=refresh_cache), record, checkpoint=checkpoint, output_nodes=output_nodes,
            entrypoint=entrypoint, model_name=model_name, signature=signature, validation=validation,
            destination=destination, freeze_engine=freeze_engine, sanitise=sanitise, fold_batch_norm=fold_batch_norm,
        )
        publish_report(summary)
        return summary


__all__ = ["convert_checkpoint"]
