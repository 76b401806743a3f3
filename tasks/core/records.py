"""The contract between stages: small frozen, JSON-serialisable records naming files by content.

A stage receives records and returns a record; nothing else travels between tasks. Each record that
stands for files carries an :class:`Artifact` (the folder, each file's SHA-256 and size, and one digest
over all of them), so cache keys are keys on content and a cached record can check that its files
still hold what it claims (:meth:`Artifact.verify`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from tasks.core import workspace
from tasks.core.digests import combined_digest, file_sha256
from tasks.core.errors import StaleArtifactError
from tasks.core.layout import FROZEN_GRAPH, SERVING_TAG, SIGNATURE_KEY
from tasks.core.names import CheckpointFormat, ModelFormat, ReferenceSource


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileDigest(Record):
    path: str = Field(description="Path relative to the artifact's root, with '/' separators.")
    sha256: str
    size: int


class Artifact(Record):
    """A set of files with their digests: a stage's output in the workspace (named by its workspace key), or
    files the user named (a checkpoint to convert, named by its folder)."""

    key: Optional[str] = Field(default=None, description="Workspace key of a stage's output: work/STAGE/TOKEN or "
                                                         "artifacts/DIGEST, resolved against the workspace in use.")
    source: Optional[str] = Field(default=None, description="Absolute folder of files the user named; None for a "
                                                            "stage's output.")
    files: tuple[FileDigest, ...]
    digest: str = Field(description="SHA-256 over every (path, sha256) pair: the artifact's identity.")

    @classmethod
    def of(cls, root: str | Path, paths: Optional[list[str]] = None) -> "Artifact":
        """Digest ``paths`` (relative to ``root``), or every file under ``root`` when none are given.

        A folder a stage built (:func:`workspace.stage_dir`) becomes a workspace artifact named by its key
        (in a remote workspace it moves into the scratch cache under its digest); any other folder is
        named by its path.
        """
        root = Path(root).resolve()
        if paths is None:
            paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        files = tuple(
            FileDigest(path=rel, sha256=file_sha256(root / rel), size=(root / rel).stat().st_size)
            for rel in sorted(paths)
        )
        digest = combined_digest([(f.path, f.sha256) for f in files])
        if workspace.key_of(root) is None:
            return cls(source=str(root), files=files, digest=digest)
        return cls(key=workspace.settle(root, digest), files=files, digest=digest)

    def path(self, relative: str = "") -> Path:
        """A local path to the artifact (or one of its files) on this machine."""
        root = workspace.local_path(self)
        return root / relative if relative else root

    @property
    def root(self) -> str:
        """Where the artifact is, as messages name it: a local folder or a URI in the workspace."""
        return workspace.location(self)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def verify(self) -> None:
        """Raise :class:`StaleArtifactError` unless every file is still there with its recorded digest."""
        for entry in self.files:
            path = self.path(entry.path)
            if not path.is_file():
                raise StaleArtifactError(f"{path} is gone; the record that names it is stale")
            if path.stat().st_size != entry.size or file_sha256(path) != entry.sha256:
                raise StaleArtifactError(f"{path} changed since it was recorded (digest differs)")


class TensorSpec(Record):
    """One tensor of the model's interface: its graph name, dtype and shape (None: unknown)."""

    name: str
    dtype: str = Field(description="TensorFlow dtype name, e.g. 'float32'.")
    shape: Optional[tuple[Optional[int], ...]] = Field(
        default=None, description="Dimensions, None for an unknown one; the whole shape None when the rank is unknown."
    )


class ModelInterface(Record):
    """What goes in and comes out: one input tensor and one output tensor."""

    input: TensorSpec
    output: TensorSpec


class VariableInfo(Record):
    name: str
    dtype: str
    shape: tuple[int, ...]


class TrainedModel(Record):
    """The train stage's hand-off: an object-based checkpoint of the trained model and its history."""

    artifact: Artifact
    prefix: str = Field(description="Checkpoint prefix relative to the artifact root.")
    entrypoint: str
    entrypoint_digest: str
    interface: ModelInterface
    variables: tuple[VariableInfo, ...]
    losses: tuple[float, ...] = Field(description="Training loss after each epoch.")
    tensorflow_version: str


class Checkpoint(Record):
    """A checkpoint in TF1 Saver format (with a .meta graph) or TF2 object-based format."""

    artifact: Artifact
    prefix: str = Field(description="Checkpoint prefix relative to the artifact root, e.g. 'model'.")
    format: CheckpointFormat
    entrypoint: Optional[str] = Field(
        default=None, description="Builds the model of a TF2 checkpoint (package.module:function)."
    )
    entrypoint_digest: Optional[str] = None
    interface: Optional[ModelInterface] = Field(
        default=None, description="Known when the checkpoint was written by freezeflow or derived from the graph."
    )
    variables: tuple[VariableInfo, ...] = ()
    rewrites: tuple[str, ...] = Field(
        default=(), description="What the training-graph sanitiser changed in the .meta graph, one line each."
    )

    @property
    def prefix_path(self) -> Path:
        return self.artifact.path(self.prefix)


class FrozenGraph(Record):
    artifact: Artifact
    filename: str = FROZEN_GRAPH
    input_tensor: str = Field(description="Name of the input tensor in the frozen graph, e.g. 'x:0'.")
    output_tensor: str = Field(description="Name of the output tensor in the frozen graph, e.g. 'y:0'.")
    input_dtype: str
    output_nodes: tuple[str, ...]
    engine: str = Field(description="Which conversion froze it.")
    node_count: int
    rewrites: tuple[str, ...] = Field(default=(), description="Rewrites of the frozen graph (batch norms folded).")

    @property
    def graph_path(self) -> Path:
        return self.artifact.path(self.filename)


class ExportedModel(Record):
    """A SavedModel folder (saved_model.pb, variables/) with one predict signature."""

    artifact: Artifact
    tag: str = SERVING_TAG
    signature_key: str = SIGNATURE_KEY
    input_key: str
    output_key: str


class Prediction(Record):
    source: ModelFormat
    outputs: list


class CheckResult(Record):
    name: str
    passed: bool
    detail: str


class ReferenceInputs(Record):
    """The batch validation runs: inline instances, a file (named with its content digest, so a cache
    key changes with its bytes), or generated from the input signature with a seed."""

    source: ReferenceSource
    values: Optional[list] = None
    file: Optional[str] = Field(default=None, description="Absolute path of a .npy, .npz or .json file.")
    file_sha256: Optional[str] = None
    seed: int = 0
    batch_size: int = Field(default=2, ge=1)

    @property
    def description(self) -> str:
        if self.source == "inline":
            return f"{len(self.values or [])} instance(s) given inline"
        if self.source == "file":
            return f"file {self.file}"
        return f"generated from the input signature (seed {self.seed}, batch {self.batch_size})"


class Comparison(Record):
    """One format against a reference format, element by element: |a - b| <= atol + rtol * |b|."""

    format: ModelFormat
    reference: ModelFormat
    passed: bool
    detail: str = Field(description="One line: the largest differences, where, and the tolerance.")
    elements: int
    mismatched: int = Field(description="Elements past the tolerance (all of them when shapes differ).")
    max_abs_difference: Optional[float] = None
    max_abs_index: Optional[list[int]] = None
    max_rel_difference: Optional[float] = None
    max_rel_index: Optional[list[int]] = None
    worst_index: Optional[list[int]] = Field(default=None, description="The element furthest past its tolerance.")
    worst_value: Optional[float] = None
    reference_value: Optional[float] = None


class ValidationReport(Record):
    passed: bool
    rtol: float
    atol: float
    reference: ReferenceInputs
    reference_inputs: list = Field(description="The instances, when given inline; the full batch is in arrays.npz.")
    predictions: tuple[Prediction, ...]
    max_abs_difference: float
    comparisons: tuple[Comparison, ...] = ()
    rewrites: tuple[str, ...] = Field(default=(), description="Graph rewrites before freezing and export.")
    checks: tuple[CheckResult, ...]
    artifact: Artifact = Field(description="report.json, report.md and arrays.npz (inputs and every format's outputs).")


class Publication(Record):
    """A complete version at a destination: its files are there and its manifest was written last."""

    destination: str
    model_name: str
    version: int
    uri: str = Field(description="Where the version lives: a folder path or gs:// URI.")
    content_digest: str = Field(description="Digest over the published files, manifest excluded.")
    manifest_sha256: str
    files: tuple[FileDigest, ...]
    reused: bool = Field(default=False, description="True when identical content was already published.")


class VertexDeployment(Record):
    """What one deploy made: enough to take exactly that down again."""

    project: str
    region: str
    api_endpoint: Optional[str] = None
    endpoint: str = Field(description="Endpoint resource name.")
    endpoint_created: bool = Field(description="True when this deploy created the endpoint (so undeploy deletes it).")
    model: str = Field(description="Model resource name this deploy uploaded.")
    deployed_model_id: str
    previous_traffic_split: dict[str, int] = Field(description="The endpoint's traffic split before this deploy.")
    predict_url: str
    smoke_predictions: list
    expires_at: Optional[int] = Field(default=None, description="Unix seconds after which undeploy --expired takes it down.")


class StageRun(Record):
    """How one stage of a run ended: its final state's name (Completed, Cached) and its wall time."""

    name: str
    state: str
    seconds: float


class RunSummary(Record):
    """What a pipeline flow returns: every stage's record and how each stage ran.

    The CLI prints it, the run report renders it and the smoke flow checks it; Prefect persists it as
    JSON (the flows' ``result_serializer``), and it reads back as itself.
    """

    model_name: str
    stages: tuple[StageRun, ...]
    checkpoint: Checkpoint
    frozen_graph: FrozenGraph
    saved_model: ExportedModel
    validation: ValidationReport
    publication: Publication
    losses: tuple[float, ...] = Field(default=(), description="Training loss per epoch; empty for a converted checkpoint.")
    deployment: Optional[VertexDeployment] = Field(default=None, description="The Vertex AI deployment, when one was asked for.")

