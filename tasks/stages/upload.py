"""Stage 6, upload: publish the frozen graph and the SavedModel with a manifest to a destination
(the work is :func:`tasks.storage.publishing.upload_model`); one publisher per model at a time."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from prefect.tasks import exponential_backoff

from tasks.core import layout
from tasks.core.errors import TransientDestinationError
from tasks.core.records import ExportedModel, FrozenGraph, ModelInterface, Publication, ValidationReport
from tasks.stages.cache_policy import stage_task
from tasks.storage.publishing import upload_model, verify_publication
from tasks.storage.uris import GS_SCHEME, is_gs_uri


def _is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only errors that a retry can fix; a permission error or a bad path fails at once."""
    try:
        state.result()
    except TransientDestinationError:
        return True
    except Exception:
        return False
    return False


    # An upload that hits its cache still re-verifies that the version is at the destination.
@stage_task(
    "upload", verifier=verify_publication,
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
