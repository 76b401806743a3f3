"""Request batching as TF Serving does it: concurrent predict requests for one signature run as one call.

TF Serving's ``--enable_batching`` queues requests per servable and signature, and a batch thread takes
what is queued (up to ``max_batch_size`` rows, after waiting at most ``batch_timeout_micros`` for the
batch to fill), concatenates the inputs along the 0th dimension, runs the model once and splits the
outputs back. This module does the same on the server's event loop: one queue per (loaded version,
signature, inner shapes), at most one batch of a queue running at a time, so requests that arrive while
a batch runs form the next one. With ``batch_timeout_micros=0`` (TF Serving's default) nothing waits
that would not have waited anyway.

The queue is bounded as TF Serving bounds it: at most ``max_enqueued_batches`` batches wait (the one
still filling included; one already running does not count). A request that fits in none of them is
refused at once, with TF Serving's UNAVAILABLE status and message, which its REST API answers as 503
``{"error": "The batch scheduling queue to which this task was submitted is full"}``: under more load
than the model can take, clients learn it in microseconds and can back off (``freezeflow predict``
retries 503) instead of waiting in a queue that only grows.

Only requests whose every input has one leading batch dimension of the same size join a batch, and
only for signatures whose inputs and outputs all have an unknown 0th dimension; anything else (and a
request larger than ``max_batch_size``) runs alone, as it would without batching. A batch that fails
is run again request by request, so each request gets its own answer and one bad request cannot fail
its neighbours.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Optional

from tasks.core.errors import ParameterError
from tasks.serving.rest import PredictRequest, RequestError, SignatureSpec, encode, response_body

log = logging.getLogger("freezeflow.serving")

DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_MAX_ENQUEUED_BATCHES = 10  # TF's BasicBatchScheduler default, which TF Serving uses when unset
# TF Serving's words (tensorflow/core/kernels/batching_util/shared_batch_scheduler.h), status UNAVAILABLE,
# which its REST API maps to 503 (tensorflow_serving/model_servers/http_server.cc, ToHTTPStatusCode).
QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"
QUEUE_FULL_STATUS = 503

# What a finished request gets: the HTTP status and the response body's bytes.
Answer = tuple[int, bytes]


@dataclass(frozen=True)
class BatchingOptions:
    """``max_batch_size``: rows (instances) per batch; ``batch_timeout_micros``: longest wait for a batch to fill;
    ``max_enqueued_batches``: most batches waiting per queue, the one filling included (more are refused, 503)."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ParameterError(f"--max-batch-size must be 1 or more, got {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise ParameterError(f"--batch-timeout-micros must be 0 or more, got {self.batch_timeout_micros}")
        if self.max_enqueued_batches < 1:
            raise ParameterError(f"--max-enqueued-batches must be 1 or more, got {self.max_enqueued_batches}")


def batch_rows(request: PredictRequest, spec: SignatureSpec) -> Optional[int]:
    """How many rows ``request`` adds to a batch, or None when it cannot join one.

    A request joins when every input (and the signature's every output) has an unknown 0th dimension,
    as TF Serving's batching session requires, and the request's inputs agree on their 0th size.
    """
    for info in list(spec.inputs.values()) + list(spec.outputs.values()):
        if info.shape is None or not info.shape or info.shape[0] is not None:
            return None
    sizes = {getattr(array, "shape", ())[:1] for array in request.inputs.values()}
    if len(sizes) != 1:
        return None
    (leading,) = sizes
    return leading[0] if leading and leading[0] > 0 else None


def batch_key(version: Any, request: PredictRequest) -> Hashable:
    """Requests batch together only for the same loaded version and signature and the same inner shapes."""
    # The dtype itself, not its name: str(dtype) cost more than the rest of the key (profiled at 64 clients).
    shapes = tuple(sorted((name, array.shape[1:], array.dtype) for name, array in request.inputs.items()))
    return (id(version), request.signature_name, shapes)


def run_one(predict: Callable[[str, dict[str, Any]], dict[str, Any]], request: PredictRequest) -> Answer:
    """Predict one request and encode its answer; a request's own fault is its 4xx answer."""
    try:
        return 200, encode(response_body(predict(request.signature_name, request.inputs), request))
    except RequestError as exc:
        return exc.status, encode({"error": exc.message})


def run_batch(predict: Callable[[str, dict[str, Any]], dict[str, Any]],
              requests: list[tuple[PredictRequest, int]]) -> list[Answer]:
    """Concatenate the requests' inputs, predict once, split the outputs back by each request's rows."""
    import numpy as np

    if len(requests) == 1:
        return [run_one(predict, requests[0][0])]
    first = requests[0][0]
    inputs = {name: np.concatenate([r.inputs[name] for r, _ in requests]) for name in first.inputs}
    total = sum(rows for _, rows in requests)
    try:
        outputs = predict(first.signature_name, inputs)
    except RequestError:
        outputs = None  # which request was at fault is unknown: ask each alone
    if outputs is None or any(np.shape(v)[:1] != (total,) for v in outputs.values()):
        return [run_one(predict, request) for request, _ in requests]
    answers: list[Answer] = []
    start = 0
    for request, rows in requests:
        part = {name: value[start:start + rows] for name, value in outputs.items()}
        start += rows
        try:
            answers.append((200, encode(response_body(part, request))))
        except RequestError as exc:
            answers.append((exc.status, encode({"error": exc.message})))
    return answers


_Entry = tuple[PredictRequest, int, "asyncio.Future[Answer]"]


class _Batch:
    __slots__ = ("entries", "rows")

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.rows = 0


class _Queue:
    """TF Serving's queue: batches in arrival order, the last one open (filling), the others closed (full)."""

    __slots__ = ("batches", "arrived", "worker")

    def __init__(self) -> None:
        self.batches: collections.deque[_Batch] = collections.deque([_Batch()])
        self.arrived = asyncio.Event()  # set whenever an item is queued: a waiting batch may now be full
        self.worker: Optional[asyncio.Task[None]] = None

    def empty(self) -> bool:
        return not self.batches[0].entries

    def enqueued_batches(self) -> int:
        """Batches waiting, the open one included when it holds a request."""
        return len(self.batches) - (0 if self.batches[-1].entries else 1)

    def take(self) -> _Batch:
        """The front batch, to run; a new open batch takes its place when it was the only one."""
        batch = self.batches.popleft()
        if not self.batches:
            self.batches.append(_Batch())
        return batch


class BatchScheduler:
    """Queues of predict requests on one event loop; each queue runs one batch at a time on ``executor``."""

    def __init__(self, options: BatchingOptions, executor: Executor) -> None:
        self.options = options
        self._executor = executor
        self._queues: dict[Hashable, _Queue] = {}
        # What ran, for `--verbose` and the tests: model calls, requests they answered, the largest batch.
        self.batches = 0
        self.batched_requests = 0
        self.largest_batch_rows = 0
        self.refused = 0  # requests answered 503 because their queue was full

    def enqueued_batches(self) -> int:
        """Batches waiting in every queue (not those running)."""
        return sum(queue.enqueued_batches() for queue in self._queues.values())

    async def submit(self, key: Hashable, predict: Callable[[str, dict[str, Any]], dict[str, Any]],
                     request: PredictRequest, rows: int) -> Answer:
        loop = asyncio.get_running_loop()
        if rows > self.options.max_batch_size:  # larger than any batch: run it alone
            return await loop.run_in_executor(self._executor, run_one, predict, request)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
        if queue.batches[-1].rows + rows > self.options.max_batch_size:  # the open batch has no room: close it
            if len(queue.batches) >= self.options.max_enqueued_batches:
                self.refused += 1
                raise RequestError(QUEUE_FULL, QUEUE_FULL_STATUS)
            queue.batches.append(_Batch())
        future: asyncio.Future[Answer] = loop.create_future()
        batch = queue.batches[-1]
        batch.entries.append((request, rows, future))
        batch.rows += rows
        queue.arrived.set()
        if queue.worker is None:
            queue.worker = loop.create_task(self._drain(key, queue, predict))
        return await future

    async def _drain(self, key: Hashable, queue: _Queue, predict: Callable[..., dict[str, Any]]) -> None:
        """Run batches while the queue holds requests; the worker ends (and the queue goes) when it is empty."""
        loop = asyncio.get_running_loop()
        limit, wait = self.options.max_batch_size, self.options.batch_timeout_micros / 1e6
        try:
            while not queue.empty():
                if wait > 0 and len(queue.batches) == 1 and queue.batches[0].rows < limit:
                    deadline = time.monotonic() + wait
                    while (len(queue.batches) == 1 and queue.batches[0].rows < limit
                           and (left := deadline - time.monotonic()) > 0):
                        queue.arrived.clear()
                        try:
                            await asyncio.wait_for(queue.arrived.wait(), left)
                        except TimeoutError:
                            break
                taken = queue.take()
                batch = [(request, size) for request, size, _ in taken.entries]
                futures = [future for _, _, future in taken.entries]
                rows = taken.rows
                self.batches += 1
                self.batched_requests += len(batch)
                self.largest_batch_rows = max(self.largest_batch_rows, rows)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("batch of %d request(s), %d row(s)", len(batch), rows)
                try:
                    answers = await loop.run_in_executor(self._executor, run_batch, predict, batch)
                except Exception as exc:  # a fault of the server (TensorFlow), not of one request
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for future, answer in zip(futures, answers):
                    if not future.done():  # a client that went away cancelled its wait
                        future.set_result(answer)
        finally:
            # No await between the last emptiness check and here: a request queued meanwhile is impossible.
            queue.worker = None
            while not queue.empty():  # only when cancelled (the server stops): nobody will run these
                for _, _, future in queue.take().entries:
                    if not future.done():
                        future.set_exception(RuntimeError("the server is shutting down"))
            if self._queues.get(key) is queue:
                del self._queues[key]
