"""Request batching: concurrent requests for one version and signature run as one model call, each gets its own answer."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tasks.core.records import ExportedModel
from tests.support.serving import publish


def concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once from its own thread (each with its own connection); results in order."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:  # reported by the assertion on the results
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def post(url: str, body: dict) -> Callable[[], Any]:
    def call() -> Any:
        with httpx.Client(timeout=60) as own:
            answer = own.post(url, json=body)
            return answer.status_code, answer.json()

    return call


def open_batching(source: str, **options: Any) -> Any:
    from tasks.serving.batching import BatchingOptions
    from tasks.serving.server import open_server

    return open_server(source, port=0, poll_seconds=0.1, batching=BatchingOptions(**options))


def test_concurrent_requests_run_as_one_batch_and_each_gets_its_own_answer(model_dir: Path) -> None:
    # A wait long enough for all twelve to arrive, even on a loaded machine where starting twelve client
    # threads takes a while: they must share model calls, not make twelve.
    with open_batching(str(model_dir), max_batch_size=64, batch_timeout_micros=2_000_000).start() as server:
        calls = [post(f"{server.model_url}:predict", {"instances": [{"inputs": float(i)}] * (1 + i % 3)})
                 for i in range(12)]
        results = concurrently(calls)
        assert results == [(200, {"predictions": [0.5 * i + 1.0] * (1 + i % 3)}) for i in range(12)]
        stats = server.batches
        assert stats.batched_requests == 12
        assert stats.batches <= 3, f"{stats.batches} model calls for 12 concurrent requests"
        assert stats.largest_batch_rows > 3  # at least one call carried several requests' rows


def test_a_batch_never_exceeds_max_batch_size_rows(model_dir: Path) -> None:
    with open_batching(str(model_dir), max_batch_size=4, batch_timeout_micros=100_000).start() as server:
        calls = [post(f"{server.model_url}:predict", {"instances": [float(i), float(i) + 1, float(i) + 2]})
                 for i in range(6)]
        results = concurrently(calls)
        assert results == [(200, {"predictions": [0.5 * x + 1.0 for x in (i, i + 1, i + 2)]}) for i in range(6)]
        assert server.batches.largest_batch_rows <= 4
        assert server.batches.batches == 6  # two requests of 3 rows never fit in 4


def test_columnar_requests_batch_and_answer_in_their_own_form(model_dir: Path) -> None:
    with open_batching(str(model_dir), batch_timeout_micros=1_000_000).start() as server:
        results = concurrently([
            post(f"{server.model_url}:predict", {"inputs": [2.0, 4.0]}),
            post(f"{server.model_url}:predict", {"inputs": {"inputs": [6.0]}}),
            post(f"{server.model_url}:predict", {"instances": [6.0]}),
        ])
        assert results == [(200, {"outputs": [2.0, 3.0]}), (200, {"outputs": [4.0]}), (200, {"predictions": [4.0]})]
        assert server.batches.batches < 3


def test_requests_for_different_versions_are_never_mixed(model_dir: Path, exports: dict[str, ExportedModel]) -> None:
    publish(model_dir, 2, exports["double"])
    with open_batching(str(model_dir), batch_timeout_micros=200_000).start() as server:
        assert server.repository.versions() == [1, 2]
        calls = [post(f"{server.model_url}/versions/{1 + i % 2}:predict", {"instances": [6.0]}) for i in range(8)]
        results = concurrently(calls)
        assert results == [(200, {"predictions": [4.0 if i % 2 == 0 else 12.0]}) for i in range(8)]


def test_a_bad_request_among_batched_ones_gets_its_own_error_alone(model_dir: Path) -> None:
    with open_batching(str(model_dir), batch_timeout_micros=200_000).start() as server:
        url = f"{server.model_url}:predict"
        results = concurrently([post(url, {"instances": [6.0]}), post(url, {"instances": ["six"]}),
                                post(url, {"instances": [2.0]})])
        assert results[0] == (200, {"predictions": [4.0]}) and results[2] == (200, {"predictions": [2.0]})
        status, body = results[1]
        assert status == 400 and "float32 takes numbers" in body["error"]


def test_batching_options_are_checked() -> None:
    from tasks.core.errors import ParameterError
    from tasks.serving.batching import BatchingOptions

    with pytest.raises(ParameterError, match="--max-batch-size must be 1 or more, got 0"):
        BatchingOptions(max_batch_size=0)
    with pytest.raises(ParameterError, match="--batch-timeout-micros must be 0 or more, got -1"):
        BatchingOptions(batch_timeout_micros=-1)


def test_a_batch_the_model_refuses_is_answered_request_by_request() -> None:
    import json

    import numpy as np

    from tasks.serving.batching import run_batch
    from tasks.serving.rest import PredictRequest, RequestError

    calls: list[int] = []

    def predict(signature: str, inputs: dict) -> dict:
        """A model that refuses negative inputs, as a graph's Assert op would."""
        calls.append(len(inputs["x"]))
        if (inputs["x"] < 0).any():
            raise RequestError("assertion failed: x >= 0")
        return {"y": inputs["x"] * 2}

    requests = [PredictRequest("serving_default", {"x": np.array(values, np.float32)}, "row", len(values))
                for values in ([1.0], [-1.0, 2.0], [3.0])]
    answers = run_batch(predict, [(r, r.batch_size) for r in requests])
    assert [(status, json.loads(body)) for status, body in answers] == [
        (200, {"predictions": [2.0]}), (400, {"error": "assertion failed: x >= 0"}), (200, {"predictions": [6.0]})]
    assert calls == [4, 1, 2, 1]  # the batch once, then each request alone


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.01)


def test_a_request_past_max_enqueued_batches_is_refused_with_tf_servings_503(model_dir: Path) -> None:
    from tasks.serving.batching import BatchingOptions
    from tasks.serving.repository import ModelRepository
    from tasks.serving.server import ModelServer
    from tasks.serving.sources import open_model_source

    repository = ModelRepository(open_model_source(str(model_dir)), keep_versions=1)
    repository.refresh()
    options = BatchingOptions(max_batch_size=2, max_enqueued_batches=2)
    with ModelServer(repository, port=0, batching=options, threads=1).start() as server:
        url = f"{server.model_url}:predict"
        release = threading.Event()
        # The server's one model thread is held: the batch it takes next cannot finish until released.
        held = server._executor.submit(release.wait, 60)
        try:
            results: dict[str, Any] = {}

            def send(name: str, instances: list[float]) -> threading.Thread:
                thread = threading.Thread(target=lambda: results.__setitem__(name, post(url, {"instances": instances})()))
                thread.start()
                return thread

            first = [send("a", [1.0])]
            wait_until(lambda: server.batches.batches == 1, "request a taken as a batch")  # running: not counted
            queued = [send("b", [2.0, 3.0]), send("c", [4.0, 5.0])]  # a full batch each
            wait_until(lambda: server.batches.enqueued_batches() == 2, "two batches enqueued")
            with httpx.Client(timeout=10) as own:
                refused = own.post(url, json={"instances": [5.0]})  # fits in neither: the queue is full
            assert refused.status_code == 503
            assert refused.json() == {"error": "The batch scheduling queue to which this task was submitted is full"}
            assert refused.headers["content-type"] == "application/json"
            assert server.batches.refused == 1
            assert all(thread.is_alive() for thread in first + queued)  # still waiting for the model
        finally:
            release.set()
        held.result(timeout=60)
        for thread in first + queued:
            thread.join(timeout=60)
        assert results == {"a": (200, {"predictions": [1.5]}), "b": (200, {"predictions": [2.0, 2.5]}),
                           "c": (200, {"predictions": [3.0, 3.5]})}
        # Once the queue has drained it takes requests again.
        assert post(url, {"instances": [6.0]})() == (200, {"predictions": [4.0]})


def test_max_enqueued_batches_is_checked() -> None:
    from tasks.core.errors import ParameterError
    from tasks.serving.batching import BatchingOptions

    with pytest.raises(ParameterError, match="--max-enqueued-batches must be 1 or more, got 0"):
        BatchingOptions(max_enqueued_batches=0)
