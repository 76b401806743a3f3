"""Stage 6, upload: publish the frozen graph and the SavedModel with a manifest to a destination."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

from prefect import task
from prefect.tasks import exponential_backoff

from tasks.core import layout
from tasks.stages.cache_policy import stage_policy
from tasks.storage.base import PublishFile
from tasks.storage.destinations import open_destination
from tasks.storage.uris import GS_SCHEME, is_gs_uri
from tasks.core.errors import StaleArtifactError, TransientDestinationError
from tasks.core.records import ExportedModel, FrozenGraph, ModelInterface, Publication, ValidationReport

STAGE_MODULES = ("tasks.stages.upload", "tasks.storage.destinations", "tasks.core.layout", "tasks.core.records")


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
            "tolerance": report.tolerance,
            "max_abs_difference": report.max_abs_difference,
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

    from tasks.stages.validate import require_passed

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


def _is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only errors that a retry can fix; a permission error or a bad path fails at once."""
    try:
        state.result()
    except TransientDestinationError:
        return True
    except Exception:
        return False
    return False


@task(
    name="upload",
    cache_policy=stage_policy("upload", *STAGE_MODULES, verifier=verify_publication),
    # An upload that hits its cache still re-verifies that the version is at the destination.
    result_serializer="json",
    persist_result=True,
    cache_result_in_memory=False,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_is_transient,
)
def upload(
    destination: str,
    model_name: str,
    interface: ModelInterface,
    frozen: FrozenGraph,
    exported: ExportedModel,
    report: ValidationReport,
    parameters: dict[str, Any],
) -> Publication:
    from prefect.artifacts import create_link_artifact
    from prefect.runtime import flow_run

    with one_publisher_per_model(model_name):
        publication = upload_model(destination, model_name, interface, frozen, exported, report, parameters,
                                   flow_run_id=str(flow_run.id) if flow_run.id else None)
    create_link_artifact(
        link=browsable_link(publication.uri), link_text=f"{model_name} v{publication.version}",
        key=layout.artifact_key(model_name, "published"), description="The published version",
    )
    return publication


@contextmanager
def one_publisher_per_model(model_name: str) -> Iterator[None]:
    """Hold the model's global concurrency slot (limit 1) while publishing, across every run on the server.

    Prefect 3.9 no longer creates a limit on first use, and a missing limit limits nothing, so it is
    upserted first. Destinations are race-safe on their own (two versions, never a mixed one); this
    keeps two runs from spending the same upload at once.
    """
    from prefect import get_client
    from prefect.concurrency.sync import concurrency

    name = layout.artifact_key(model_name, "publish")
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
    with concurrency(name, occupy=1, strict=True):
        yield


def browsable_link(uri: str) -> str:
    """A link a browser opens: the Cloud Console for gs://, file:// for a local folder."""
    if is_gs_uri(uri):
        return "https://console.cloud.google.com/storage/browser/" + uri[len(GS_SCHEME):]
    from pathlib import Path

    return Path(uri).as_uri()
