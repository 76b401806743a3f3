"""Records built by hand, for tests of code that only reads them (the CLI's summary, the run report)."""

from __future__ import annotations

from typing import Any, Optional

from tasks.core.records import (
    Artifact,
    CheckResult,
    Checkpoint,
    ExportedModel,
    FileDigest,
    FrozenGraph,
    ReferenceInputs,
    ModelInterface,
    Prediction,
    Publication,
    RunSummary,
    StageRun,
    TensorSpec,
    ValidationReport,
)

GUIDE_OUTPUTS = {"checkpoint": [2.0, 3.0, 4.0], "frozen_graph": [2.0, 3.0, 4.0], "saved_model": [2.0, 3.0, 4.0]}
STAGES = ("train", "checkpoint", "freeze", "export", "validate", "upload")


def by_folder(record: Any) -> Any:
    """``record`` with its artifact named by its folder in the workspace it was built in rather than by its
    workspace key: for records a fixture builds once in a workspace of its own and tests (each with their own
    workspace) read later."""
    artifact = record.artifact
    return record.model_copy(update={"artifact": artifact.model_copy(update={"key": None,
                                                                             "source": str(artifact.path())})})


def _artifact(root: str, *names: str) -> Artifact:
    files = tuple(FileDigest(path=name, sha256=f"{i:x}" * 64, size=1000 * (i + 1)) for i, name in enumerate(names))
    return Artifact(source=root, files=files, digest="d" * 64)


def run_summary(
    *,
    model_name: str = "linear",
    uri: str = "/tmp/published/linear/1",
    reused: bool = False,
    reference_inputs: Optional[list] = None,
    predictions: Optional[dict[str, list]] = None,
    states: Optional[dict[str, str]] = None,
    losses: tuple[float, ...] = (),
    signature_key: str = "serving_default",
) -> RunSummary:
    """A complete summary of a run that published ``model_name`` at ``uri``, as publish_model returns it."""
    interface = ModelInterface(input=TensorSpec(name="x", dtype="float32", shape=(None,)),
                               output=TensorSpec(name="y", dtype="float32", shape=(None,)))
    outputs = predictions or GUIDE_OUTPUTS
    inline = reference_inputs or [2.0, 4.0, 6.0]
    published = _artifact(uri, "saved_model.pb", "variables/variables.index", "frozen_graph.pb")
    return RunSummary(
        model_name=model_name,
        stages=tuple(StageRun(name=name, state=(states or {}).get(name, "Completed"), seconds=0.25 * (i + 1))
                     for i, name in enumerate(STAGES)),
        checkpoint=Checkpoint(artifact=_artifact("/w/checkpoint", "model.index", "model.meta"), prefix="model",
                              format="tf1", interface=interface),
        frozen_graph=FrozenGraph(artifact=_artifact("/w/freeze", "frozen_graph.pb"), input_tensor="x:0",
                                 output_tensor="y:0", input_dtype="float32", output_nodes=("y",),
                                 engine="freezeflow-stream", node_count=7),
        saved_model=ExportedModel(artifact=_artifact("/w/export/1", "saved_model.pb"), input_key="inputs",
                                  output_key="outputs", signature_key=signature_key),
        validation=ValidationReport(
            passed=True, rtol=1e-4, atol=1e-5, reference=ReferenceInputs(source="inline", values=inline),
            reference_inputs=inline,
            predictions=tuple(Prediction(source=s, outputs=o) for s, o in outputs.items()),
            max_abs_difference=0.0, checks=(CheckResult(name="serving", passed=True, detail="ok"),),
            artifact=_artifact("/w/validate", "report.json", "report.md"),
        ),
        publication=Publication(destination=uri.rsplit("/", 2)[0], model_name=model_name, version=int(uri.rsplit("/", 1)[1]),
                                uri=uri, content_digest="c" * 64, manifest_sha256="m" * 64, files=published.files,
                                reused=reused),
        losses=losses,
    )
