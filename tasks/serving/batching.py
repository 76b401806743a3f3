"""Request batching as TF Serving does it: concurrent predict requests for one signature run as one call.

TF Serving's ``--enable_batching`` queues requests per servable and signature, and a batch thread takes
what is queued (up to ``max_batch_size`` rows, after waiting at most ``batch_timeout_micros`` for the
batch to fill), concatenates the inputs along the 0th dimension, runs the model once and splits the
outputs back. This module does the same on the server's event loop: one queue per (loaded version,
signature, inner shapes), at most one batch of a queue running at a time, so requests that arrive while
a batch runs form the next one. With ``batch_timeout_micros=0`` (TF Serving's default) nothing waits
that would not have waited anyway.

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

# What a finished request gets: the HTTP status and the response body's bytes.
Answer = tuple[int, bytes]


@dataclass(frozen=True)
class BatchingOptions:
    """``max_batch_size``: rows (instances) per batch; ``batch_timeout_micros``: longest wait for a batch to fill."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ParameterError(f"--max-batch-size must be 1 or more, got {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise ParameterError(f"--batch-timeout-micros must be 0 or more, got {self.batch_timeout_micros}")


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
    shapes = tuple(sorted((name, array.shape[1:], str(array.dtype)) for name, array in request.inputs.items()))
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


class _Queue:
    __slots__ = ("items", "rows", "arrived", "worker")

    def __init__(self) -> None:
        self.items: collections.deque[tuple[PredictRequest, int, asyncio.Future[Answer]]] = collections.deque()
        self.rows = 0
        self.arrived = asyncio.Event()  # set whenever an item is queued: a waiting batch may now be full
        self.worker: Optional[asyncio.Task[None]] = None


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

    async def submit(self, key: Hashable, predict: Callable[[str, dict[str, Any]], dict[str, Any]],
                     request: PredictRequest, rows: int) -> Answer:
        loop = asyncio.get_running_loop()
        if rows > self.options.max_batch_size:  # larger than any batch: run it alone
            return await loop.run_in_executor(self._executor, run_one, predict, request)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue()
        future: asyncio.Future[Answer] = loop.create_future()
        queue.items.append((request, rows, future))
        queue.rows += rows
        queue.arrived.set()
        if queue.worker is None:
            queue.worker = loop.create_task(self._drain(key, queue, predict))
        return await future

    async def _drain(self, key: Hashable, queue: _Queue, predict: Callable[..., dict[str, Any]]) -> None:
        """Run batches while the queue holds requests; the worker ends (and the queue goes) when it is empty."""
        loop = asyncio.get_running_loop()
        limit, wait = self.options.max_batch_size, self.options.batch_timeout_micros / 1e6
        try:
            while queue.items:
                if wait > 0 and queue.rows < limit:
                    deadline = time.monotonic() + wait
                    while queue.rows < limit and (left := deadline - time.monotonic()) > 0:
                        queue.arrived.clear()
                        try:
                            await asyncio.wait_for(queue.arrived.wait(), left)
                        except TimeoutError:
                            break
                batch: list[tuple[PredictRequest, int]] = []
                futures: list[asyncio.Future[Answer]] = []
                rows = 0
                while queue.items and rows + queue.items[0][1] <= limit:
                    request, size, future = queue.items.popleft()
                    queue.rows -= size
                    rows += size
                    batch.append((request, size))
                    futures.append(future)
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
            while queue.items:  # only when cancelled (the server stops): nobody will run these
                _, size, future = queue.items.popleft()
                queue.rows -= size
                if not future.done():
                    future.set_exception(RuntimeError("the server is shutting down"))
            if not queue.items and self._queues.get(key) is queue:
                del self._queues[key]
