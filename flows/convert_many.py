"""The ``convert_many`` flow: every checkpoint a SOURCE names converted on a Dask cluster through
prefect-dask, one Prefect task per checkpoint, so one bad checkpoint fails only its own item.

Each item's task runs the same stages as ``convert_checkpoint`` (flows/stage_runner.py), inline on
the worker that picked it up, against the submitting machine's workspace (its cache); items travel
as small records (paths or URIs plus parameters). The Prefect API URL travels in the serialised
settings of every submitted task, so a bare ``dask worker`` reports to the flow's own API and never
starts a temporary server of its own.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Iterator, Optional

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows.params import DestinationURI, FreezeEngine, SignatureParams, ValidationParams, parameters_record
from tasks.fleet.items import BatchSettings, FleetItem

PROGRESS_KEY = "convert-many-progress"
TABLE_KEY = "convert-many-outcomes"
COLUMNS = ("item", "model", "version", "outcome", "reason", "seconds")
ITEM_TIMEOUT = 3600.0  # seconds one item may take before it fails on its own
RESTART_TIMEOUT = 60.0  # seconds a hung worker's restart may take


# --- one item, on a worker ----------------------------------------------------------------------


def convert_one(item: FleetItem, batch: BatchSettings) -> dict[str, Any]:
    """Convert one checkpoint with the shared stages (each a Prefect task, cached on content), inline.

    Returns the item's outcome row; raises the stage's error (one line) when the item fails.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # a bare worker has no setting of ours; quiet TF's C++ start
    from flows.stage_runner import StageClock, convert_stages
    from tasks.core import workspace
    from tasks.fleet.cluster import stop_worker_profiler
    from tasks.fleet.sources import localise
    from tasks.tf.checkpoints import describe_checkpoint

    stop_worker_profiler()  # before any TensorFlow runs here (see its docstring: a deadlock otherwise)
    started = time.monotonic()
    signature = SignatureParams.model_validate(batch.signature)
    validation = ValidationParams.model_validate(batch.validation)
    output_nodes = list(item.output_nodes) if item.output_nodes else None
    with workspace.using(batch.workspace) as home:
        record = describe_checkpoint(localise(item.checkpoint, home), item.entrypoint, output_nodes)
        summary = convert_stages(
            StageClock(), record, model_name=item.model_name, output_nodes=output_nodes, signature=signature,
            validation=validation, destination=batch.destination, refresh=batch.refresh_cache,
            freeze_engine=batch.freeze_engine, side_by_side=False,
            parameters=parameters_record(checkpoint=item.checkpoint, output_nodes=output_nodes,
                                         entrypoint=item.entrypoint, model_name=item.model_name, signature=signature,
                                         validation=validation, destination=batch.destination,
                                         freeze_engine=batch.freeze_engine),
        )
    publication = summary.publication
    stages = {stage.name: stage.state for stage in summary.stages}
    fresh = stages["upload"] != "Cached" and not publication.reused
    return {
        "item": item.origin, "model": item.model_name, "version": publication.version,
        "outcome": "published" if fresh else "cached", "reason": "", "uri": publication.uri, "stages": stages,
        "seconds": round(time.monotonic() - started, 2), "worker": _worker_name(),
    }


def _worker_name() -> Optional[str]:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):  # not on a Dask worker (a plain call, a test)
        return None


@task(name="convert-item", task_run_name="convert-{item.model_name}", cache_policy=NO_CACHE, retries=0)
def convert_item(item: FleetItem, batch: BatchSettings) -> dict[str, Any]:
    # No retries of its own: a conversion error is the checkpoint's, and a lost worker is Dask's to
    # reschedule; each stage inside keeps its own retries and cache.
    return convert_one(item, batch)


# --- the batch, in the flow -----------------------------------------------------------------------


def failure_reason(future: Any) -> str:
    """One line for a failed item: the stage's own error, or what Dask reports (a worker lost three times)."""
    wrapped = future.wrapped_future
    if wrapped.status == "error":
        exc = wrapped.exception()
        return _one_line(f"{type(exc).__name__}: {exc}")
    state = future.state
    error = state.result(raise_on_failure=False) if state.is_final() else None
    if isinstance(error, BaseException):
        from tasks.core.errors import FreezeflowError

        text = str(error) if isinstance(error, FreezeflowError) else f"{type(error).__name__}: {error}"
        return _one_line(text)
    return _one_line(state.message or state.name)


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return " ".join((lines[0] if lines else "").split())[:500]


class BatchProgress:
    """Items done / failed / total: a rich bar on stderr (drawn only on a terminal) and a Prefect progress artifact."""

    def __init__(self, total: int, destination: str) -> None:
        from prefect.artifacts import create_progress_artifact
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.total, self.done, self.failed, self.started = total, 0, 0, time.monotonic()
        self._artifact = create_progress_artifact(
            progress=0.0, key=PROGRESS_KEY, description=f"convert_many: {total} checkpoints → {destination}")
        self._bar = Progress(
            TextColumn("converting"), BarColumn(),
            TextColumn("{task.fields[ok]} done, {task.fields[failed]} failed of {task.total}"),
            TimeElapsedColumn(), TextColumn("{task.fields[rate]}"),
            console=Console(stderr=True), transient=False, disable=not Console(stderr=True).is_terminal,
        )
        self._task = self._bar.add_task("items", total=total, ok=0, failed=0, rate="")
        self._bar.start()

    def item_finished(self, failed: bool) -> None:
        from prefect.artifacts import update_progress_artifact

        self.done += 1
        self.failed += failed
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self._bar.update(self._task, completed=self.done, ok=self.done - self.failed, failed=self.failed,
                         rate=f"{60 * self.done / elapsed:.1f} items/min")
        update_progress_artifact(self._artifact, progress=100.0 * self.done / max(self.total, 1))

    def close(self) -> None:
        self._bar.stop()


def run_window(runner: Any, items: Iterator[FleetItem], batch: BatchSettings, cap: int, item_timeout: float,
               progress: BatchProgress) -> list[dict[str, Any]]:
    """Submit items as earlier ones finish, never more than ``cap`` at once, and collect one row each.

    Items are read from the SOURCE stream only as slots free up, so neither the flow nor the scheduler
    holds a 10,000-item batch at once. Every wait is bounded: an item with no result ``item_timeout``
    seconds after it was submitted fails on its own (a hung conversion, or no worker left to run it),
    its worker is restarted so the hung thread does not hold a slot, and the batch goes on.
    """
    from distributed import Client
    from distributed import wait as dask_wait

    rows: list[dict[str, Any]] = []
    inflight: dict[Any, tuple[FleetItem, float, float]] = {}  # future -> (item, submitted, deadline)

    def submit_next() -> bool:
        item = next(items, None)
        if item is None:
            return False
        future = runner.submit(convert_item, {"item": item, "batch": batch})
        now = time.monotonic()
        inflight[future] = (item, now, now + item_timeout)
        return True

    while len(inflight) < cap and submit_next():
        pass
    while inflight:
        by_dask = {f.wrapped_future: f for f in inflight}
        wait_for = max(min(deadline for _, _, deadline in inflight.values()) - time.monotonic(), 0.05)
        try:
            with Client.as_current(runner.client):  # the runner's client is not the process's default
                done, _ = dask_wait(list(by_dask), timeout=wait_for, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        for wrapped in done:
            future = by_dask[wrapped]
            item, started, _ = inflight.pop(future)
            future.wait()
            state = future.state if wrapped.status != "error" else None
            if state is not None and state.is_completed():
                rows.append(state.result())
            else:
                rows.append(_failed_row(item, failure_reason(future), started))
            progress.item_finished(failed=rows[-1]["outcome"] == "failed")
            submit_next()
        expired = [f for f, (_, _, deadline) in inflight.items() if deadline <= time.monotonic()]
        if expired:
            abandon(runner, expired, f"no result within {item_timeout:g}s (--item-timeout)")
            for future in expired:
                item, started, _ = inflight.pop(future)
                rows.append(_failed_row(item, f"no result within {item_timeout:g}s (--item-timeout); the conversion "
                                              "hung or no worker was left to run it", started))
                progress.item_finished(failed=True)
            for _ in expired:
                submit_next()
    return rows


def abandon(runner: Any, futures: list[Any], reason: str) -> None:
    """Give up on items past their deadline: cancel them, mark their Prefect task runs Failed (a worker that
    hangs never reports again), and restart the workers running them, so a hung thread frees its slot.

    Every call here is bounded; a step that fails is logged and the batch goes on.
    """
    from prefect.client.orchestration import get_client
    from prefect.logging import get_run_logger
    from prefect.states import Failed

    logger = get_run_logger()
    client = runner.client
    keys = {f.wrapped_future.key for f in futures}
    try:
        stuck = sorted(address for address, running in client.processing().items() if keys & set(running))
    except Exception as exc:  # noqa: BLE001 - the scheduler itself may be gone
        logger.warning("could not ask the Dask scheduler which workers hold %d timed-out item(s): %s", len(keys), exc)
        stuck = []
    for future in futures:
        future.wrapped_future.cancel()
    with get_client(sync_client=True) as api:
        for future in futures:
            try:
                api.set_task_run_state(future.task_run_id, Failed(message=reason), force=True)
            except Exception as exc:  # noqa: BLE001 - the item's row still says it failed
                logger.warning("could not mark task run %s failed: %s", future.task_run_id, exc)
    if stuck:
        logger.warning("restarting Dask worker(s) %s: an item there gave %s", ", ".join(stuck), reason)
        try:
            outcome = client.restart_workers(stuck, timeout=RESTART_TIMEOUT, raise_for_error=False)
            logger.info("restart of %s: %s", ", ".join(stuck), outcome)
        except Exception as exc:  # noqa: BLE001 - a worker without a nanny cannot be restarted from here
            logger.warning("could not restart Dask worker(s) %s: %s", ", ".join(stuck), exc)


def _failed_row(item: FleetItem, reason: str, started: float) -> dict[str, Any]:
    return {"item": item.origin, "model": item.model_name, "version": None, "outcome": "failed", "reason": reason,
            "uri": None, "stages": {}, "seconds": round(time.monotonic() - started, 2), "worker": None}


def cluster_capacity(runner: Any) -> int:
    """Threads across the cluster's workers: how many conversions it runs at once."""
    return max(sum(runner.client.nthreads().values()), 1)


def publish_table(rows: list[dict[str, Any]], summary: str) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(table=[{c: ("" if r[c] is None else r[c]) for c in COLUMNS} for r in rows],
                          key=TABLE_KEY, description=f"convert_many: {summary}")


@flow(name="convert_many", description="Many checkpoints on a Dask cluster → frozen graphs + SavedModels → validated → published, one task each.")
def convert_many(
    sources: Annotated[list[str], Field(min_length=1, description="Folders or gs:// prefixes to scan, or JSON Lines files.")],
    destination: DestinationURI = "published",
    output_nodes: Optional[list[str]] = None,
    entrypoint: Optional[str] = None,
    dask_address: Optional[str] = None,
    workers: Annotated[Optional[int], Field(ge=1, le=1024, description="Local cluster's worker processes.")] = None,
    max_parallel: Annotated[Optional[int], Field(ge=1, description="Conversions at once.")] = None,
    signature: SignatureParams = SignatureParams(),
    validation: ValidationParams = ValidationParams(),
    refresh_cache: bool = False,
    freeze_engine: FreezeEngine = "stream",
    item_timeout_seconds: Annotated[float, Field(
        gt=0, description="Longest one item may take, from when it is submitted; past it the item fails and the "
                          "worker running it is restarted.")] = ITEM_TIMEOUT,
) -> Any:
    """Convert every checkpoint the SOURCEs name; the run fails (naming the count) if any item failed.

    Args:
        sources: Folders or gs:// prefixes scanned for checkpoints, or JSON Lines files with one
            {"checkpoint", "model_name", "output_nodes", "entrypoint"} object per line.
        destination: A local folder or gs://bucket/prefix.
        output_nodes: Output node(s) for TF1 checkpoints an item does not name its own for.
        entrypoint: package.module:function for TF2 checkpoints an item does not name its own for.
        dask_address: An existing Dask scheduler (tcp://host:8786); default FREEZEFLOW_DASK_ADDRESS, else a
            local cluster.
        workers: Worker processes of the local cluster (default: the number of cores).
        max_parallel: Conversions running at once (default: the cluster's worker threads).
        signature: Input and output keys of the SavedModel's serving_default signature.
        validation: Reference inputs and the tolerance the three formats must agree within.
        refresh_cache: Run every stage even if a cached result exists.
        freeze_engine: TF1 freezing: stream (freezeflow's engine) or tf (TensorFlow's).
        item_timeout_seconds: Longest one item may take, counted from when it is submitted (at most
            ``max_parallel`` at a time); past it the item fails on its own and the worker running it is
            restarted, so a hung conversion never holds the batch.
    """
    from prefect.context import get_run_context
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Completed, Failed
    from prefect_dask import DaskTaskRunner

    from tasks.core import workspace
    from tasks.fleet.cluster import check_scheduler, local_cluster_kwargs, scheduler_address
    from tasks.fleet.sources import check_batch, scan
    from tasks.storage.destinations import open_destination

    open_destination(destination)  # a malformed destination fails before any work
    address = scheduler_address(dask_address)
    if address:
        check_scheduler(address)
    total = check_batch(sources, output_nodes=output_nodes, entrypoint=entrypoint)  # all refusals before any work
    batch = BatchSettings(destination=destination, workspace=workspace.uri(),
                          signature=signature.model_dump(), validation=validation.model_dump(),
                          refresh_cache=refresh_cache, freeze_engine=freeze_engine)
    runner = DaskTaskRunner(address=address) if address else DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(workers))
    # The API this run reports to (an ephemeral server's too) goes into the settings every submitted
    # task carries; without it a bare worker would start a temporary server of its own.
    api_url = str(get_run_context().client.api_url)
    progress = BatchProgress(total, destination)
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}), runner:
            cap = max_parallel or cluster_capacity(runner)
            rows = run_window(runner, scan(sources, output_nodes=output_nodes, entrypoint=entrypoint), batch, cap,
                              item_timeout_seconds, progress)
    finally:
        progress.close()
    failed = sum(r["outcome"] == "failed" for r in rows)
    counts = {o: sum(r["outcome"] == o for r in rows) for o in ("published", "cached", "failed")}
    summary = f"{counts['published']} published, {counts['cached']} cached, {failed} failed of {len(rows)}"
    publish_table(rows, summary)
    result = {"total": len(rows), **counts, "items": rows}
    if failed:
        return Failed(message=f"{failed} of {len(rows)} items failed ({summary})", data=result)
    return Completed(message=summary, data=result)


__all__ = ["convert_many", "convert_item", "convert_one"]
