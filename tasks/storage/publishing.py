"""Publishing a validated model: what a version holds (the SavedModel's files and the frozen graph),
its manifest, and the check that a cached publication is still at its destination."""

from __future__ import annotations

from typing import Any, Optional

from tasks.core import layout
from tasks.core.errors import StaleArtifactError
from tasks.core.records import ExportedModel, FrozenGraph, ModelInterface, Publication, ValidationReport
from tasks.core.report import require_passed
from tasks.storage.base import PublishFile
from tasks.storage.destinations import open_destination


def publish_files(frozen: FrozenGraph, exported: ExportedModel) -> list[PublishFile]:
    """What a version holds: the SavedModel's files at the top of the version folder, and the frozen graph."""
    files = [PublishFile(source=exported.artifact.path(f.path), name=f.path, sha256=f.sha256, size=f.size)
             for f in exported.artifact.files]
    entry = next(f for f in frozen.artifact.files if f.path == frozen.filename)
    files.append(PublishFile(source=frozen.graph_path, name=layout.FROZEN_GRAPH, sha256=entry.sha256, size=entry.size))
    return files


def build_manifest(
    interface: ModelInterface,
    frozen: FrozenGraph,
    exported: ExportedModel,
    report: ValidationReport,
    tensorflow_version: str,
    flow_run_id: Optional[str],
    parameters: dict[str, Any],
) -> dict[str, Any]:
    return {
        "tensorflow_version": tensorflow_version,
        "signature": {
            "tag": exported.tag,
            "key": exported.signature_key,
            "inputs": {exported.input_key: interface.input.model_dump()},
            "outputs": {exported.output_key: interface.output.model_dump()},
        },
        "frozen_graph": {"input": frozen.input_tensor, "output": frozen.output_tensor, "engine": frozen.engine,
                         "nodes": frozen.node_count},
        "validation": {
            "passed": report.passed,
            "rtol": report.rtol,
            "atol": report.atol,
            "reference": report.reference.description,
            "max_abs_difference": report.max_abs_difference,
            "comparisons": [
                {"format": c.format, "reference": c.reference, "passed": c.passed,
                 "max_abs_difference": c.max_abs_difference, "max_rel_difference": c.max_rel_difference}
                for c in report.comparisons
            ],
            "rewrites": list(report.rewrites),
            "reference_inputs": report.reference_inputs,
            "predictions": {p.source: p.outputs for p in report.predictions},
        },
        "flow_run_id": flow_run_id,
        "parameters": parameters,
    }


def upload_model(
    destination: str,
    model_name: str,
    interface: ModelInterface,
    frozen: FrozenGraph,
    exported: ExportedModel,
    report: ValidationReport,
    parameters: dict[str, Any],
    flow_run_id: Optional[str] = None,
) -> Publication:
    """Publish a validated model; never one whose validation failed or whose files changed."""
    import tensorflow as tf

    layout.check_model_name(model_name)
    target = open_destination(destination)
    require_passed(report)
    frozen.artifact.verify()
    exported.artifact.verify()
    manifest = build_manifest(interface, frozen, exported, report, tf.__version__, flow_run_id, parameters)
    return target.publish(model_name, publish_files(frozen, exported), manifest)


def verify_publication(publication: Any) -> None:
    """A cached publication counts only while its version is still at the destination."""
    if isinstance(publication, Publication) and not open_destination(publication.destination).is_published(publication):
        raise StaleArtifactError(f"version {publication.uri} is no longer published")
