"""The typed parameters the flows share; Prefect renders them as a form in its UI.

Defaults come from :mod:`flows.defaults` and allowed values from :mod:`tasks.core.names`, which the CLI
reads too. Neither Prefect nor TensorFlow is imported here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from flows import defaults
from tasks.core import names
from tasks.core.layout import MODEL_NAME_PATTERN


class TrainingParams(BaseModel):
    """How the model is trained."""

    model_config = ConfigDict(extra="forbid")

    entrypoint: str = Field(
        default=defaults.ENTRYPOINT,
        description="package.module:function that builds and trains the model (see README, 'Bring your own model').",
    )
    epochs: int = Field(default=defaults.EPOCHS, ge=0, le=1_000_000, description="Training epochs (0 builds without training).")
    learning_rate: float = Field(default=defaults.LEARNING_RATE, gt=0, le=10, allow_inf_nan=False,
                                 description="Learning rate of the optimizer.")
    seed: int = Field(default=defaults.SEED, ge=0, description="Seed for the synthetic data and initialisation: same seed, same model.")
    options: dict[str, Any] = Field(default_factory=dict, description="Extra options handed to the entrypoint.")


class SignatureParams(BaseModel):
    """Names in the SavedModel's serving_default signature."""

    model_config = ConfigDict(extra="forbid")

    input_key: str = Field(default="inputs", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Signature input key.")
    output_key: str = Field(default="outputs", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Signature output key.")


class ValidationParams(BaseModel):
    """What the three formats are compared on."""

    model_config = ConfigDict(extra="forbid")

    reference_inputs: list[Any] = Field(
        default_factory=lambda: [2.0, 4.0, 6.0],
        min_length=1,
        description="Instances run through the checkpoint, the frozen graph and the SavedModel.",
    )
    tolerance: float = Field(default=1e-5, ge=0, allow_inf_nan=False,
                             description="Largest absolute difference allowed between formats.")


ModelName = Annotated[
    str,
    Field(pattern=MODEL_NAME_PATTERN, description="Name of the model at the destination: DEST/MODEL/VERSION."),
]
DestinationURI = Annotated[str, Field(min_length=1, description="A local folder or gs://bucket/prefix.")]
CheckpointFormat = Annotated[
    names.CheckpointFormat,
    Field(description="tf1 (a TF1 Saver checkpoint with its .meta graph, the guide's) or tf2 (object-based)."),
]
FreezeEngine = Annotated[
    names.FreezeEngine,
    Field(description="TF1 freezing: 'stream' (freezeflow's engine, flat memory) or 'tf' (TensorFlow's own)."),
]


def parameters_record(**values: Any) -> dict[str, Any]:
    """The parameters as plain JSON, for the manifest, which travels with the model (into a bucket, to others).

    Nothing of the publishing machine's file system goes in: a local path (the checkpoint, the destination,
    an entrypoint file) is recorded by its last part only; gs:// URIs and module entrypoints as given. What
    identifies the content is in the manifest's digests.
    """
    record = {k: (v.model_dump(mode="json") if isinstance(v, BaseModel) else v) for k, v in values.items()}
    for key in ("checkpoint", "destination"):
        if isinstance(record.get(key), str):
            record[key] = without_local_path(record[key])
    for holder in (record, record.get("training")):
        if isinstance(holder, dict) and isinstance(holder.get("entrypoint"), str):
            module, sep, function = holder["entrypoint"].rpartition(":")
            if module.endswith(".py"):
                holder["entrypoint"] = f"{without_local_path(module)}{sep}{function}"
    return record


def without_local_path(value: str) -> str:
    """A URI as given; a local path by its last part (``/home/you/ckpt/model`` -> ``model``)."""
    from pathlib import PurePath

    return value if "://" in value else PurePath(value).name
