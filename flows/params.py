"""The typed parameters the flows share; Prefect renders them as a form in its UI.

Defaults come from :mod:`flows.defaults` and allowed values from :mod:`tasks.core.names`, which the CLI
reads too. Neither Prefect nor TensorFlow is imported here.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows import defaults
from tasks.core import names
from tasks.core.layout import MODEL_NAME_PATTERN
from tasks.core.tolerance import DEFAULT_ATOL, DEFAULT_RTOL


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
    """What the three formats are compared on, and how closely they must agree."""

    model_config = ConfigDict(extra="forbid")

    reference_inputs: Optional[list[Any]] = Field(
        default=None,
        min_length=1,
        description="Instances run through the checkpoint, the frozen graph and the SavedModel; "
        "leave empty to use reference_inputs_file or inputs generated from the input signature.",
    )
    reference_inputs_file: Optional[str] = Field(
        default=None,
        description="A .npy or .npz (one array per signature input) or JSON file holding the reference batch.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of the generated reference inputs (used when none are given).")
    batch_size: int = Field(default=2, ge=1, le=1024, description="Instances in a generated reference batch.")
    rtol: float = Field(default=DEFAULT_RTOL, ge=0, le=1, allow_inf_nan=False,
                        description="Relative tolerance: elements pass when |a - b| <= atol + rtol * |b|.")
    atol: float = Field(default=DEFAULT_ATOL, ge=0, allow_inf_nan=False, description="Absolute tolerance (see rtol).")

    @model_validator(mode="before")
    @classmethod
    def _tolerance_is_atol(cls, data: Any) -> Any:
        """``tolerance`` (one absolute tolerance, before rtol/atol) is still read, as ``atol``."""
        if isinstance(data, dict) and "tolerance" in data:
            data = dict(data)
            tolerance = data.pop("tolerance")
            warnings.warn("ValidationParams.tolerance is deprecated: use atol (and rtol)", DeprecationWarning,
                          stacklevel=2)
            data.setdefault("atol", tolerance)
        return data

    @model_validator(mode="after")
    def _one_source(self) -> "ValidationParams":
        if self.reference_inputs is not None and self.reference_inputs_file is not None:
            raise ValueError("give reference_inputs or reference_inputs_file, not both")
        return self


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
