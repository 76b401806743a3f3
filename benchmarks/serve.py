"""Benchmark: what the local server's HTTP layer costs, against calling the same model in-process.

For 1, 8 and 64 concurrent clients it measures requests per second and p50/p99 latency of
``POST /v1/models/linear:predict`` (the guide's request) against ``freezeflow serve``'s server running in
its own process, and of the same loaded signature called directly from as many threads. The ratio
in-process rps / HTTP rps is the price of JSON and HTTP. Prints a table and writes
``benchmarks/results/serve.json``.

    .venv/bin/python benchmarks/serve.py --seconds 3
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results" / "serve.json"


def build_guide_model(folder: Path) -> Path:
    """The guide's y = 0.5x + 1, checkpointed in TF1 format and exported by the pipeline's own export stage."""
    import tensorflow as tf

    from tasks.stages.checkpoint import describe_checkpoint
    from tasks.stages.export import export_saved_model

    os.environ["FREEZEFLOW_HOME"] = str(folder / "home")
    (folder / "ckpt").mkdir(parents=True)
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, shape=[None], name="x")
        tf.identity(tf.compat.v1.Variable(0.5, name="m") * x + tf.compat.v1.Variable(1.0, name="b"), name="y")
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, str(folder / "ckpt" / "model"))
    exported = export_saved_model(describe_checkpoint(folder / "ckpt" / "model", output_nodes=["y"]))
    return exported.artifact.path()


def _serve(model: str, ports: Any, stop: Any) -> None:
    """The server process: what ``freezeflow serve MODEL --port 0`` runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tasks.serving.server import open_server

    with open_server(model, model_name="linear", port=0).start() as server:
        ports.put(server.port)
        stop.wait()


def run_clients(clients: int, seconds: float, one_call: Callable[[Any], None], setup: Callable[[], Any]) -> dict[str, Any]:
    """``clients`` threads calling ``one_call`` back to back for ``seconds``; every latency is kept."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        state = setup()
        start.wait()
        own = latencies[index]
        while True:
            began = time.perf_counter()
            if began >= deadline[0]:
                break
            try:
                one_call(state)
            except Exception as exc:  # counted, not fatal: the table shows them
                errors.append(repr(exc))
                state = setup()
            own.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - began
    every = sorted(t for own in latencies for t in own)
    return {
        "requests": len(every),
        "errors": len(errors),
        "rps": len(every) / elapsed,
        "p50_ms": statistics.median(every) * 1000 if every else float("nan"),
        "p99_ms": every[min(len(every) - 1, int(len(every) * 0.99))] * 1000 if every else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="Duration of each measurement (default 2).")
    parser.add_argument("--clients", default="1,8,64", help="Comma-separated concurrency levels.")
    parser.add_argument("--model", help="A SavedModel version folder; default: build the guide's model.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not 0 < args.seconds <= 60:
        parser.error("--seconds must be in (0, 60]")
    levels = [int(c) for c in args.clients.split(",")]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np

    from tasks.serving.repository import load_version

    scratch = tempfile.TemporaryDirectory(prefix="freezeflow-bench-")
    model = Path(args.model) if args.model else build_guide_model(Path(scratch.name))
    loaded = load_version(model, 1)
    body = json.dumps({"instances": [{"inputs": 6.0}]}).encode()
    expected = b'{"predictions":[4.0]}'

    context = multiprocessing.get_context("spawn")  # a fresh process: the server shares no GIL with the clients
    ports, stop = context.Queue(), context.Event()
    server = context.Process(target=_serve, args=(str(model), ports, stop), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=300)

        def http_call(connection: http.client.HTTPConnection) -> None:
            connection.request("POST", "/v1/models/linear:predict", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            if response.status != 200 or data != expected:
                raise RuntimeError(f"{response.status} {data[:100]!r}")

        def in_process_call(_: Any) -> None:
            out = loaded.predict("serving_default", {"inputs": np.array([6.0], dtype=np.float32)})
            if out["outputs"].tolist() != [4.0]:
                raise RuntimeError(str(out))

        def connect() -> http.client.HTTPConnection:
            return http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        run_clients(4, 0.5, http_call, connect)  # warm up: first calls trace functions, open connections
        run_clients(4, 0.5, in_process_call, lambda: None)
        rows = []
        for clients in levels:
            over_http = run_clients(clients, args.seconds, http_call, connect)
            in_process = run_clients(clients, args.seconds, in_process_call, lambda: None)
            rows.append({"clients": clients, "http": over_http, "in_process": in_process,
                         "overhead_ratio": in_process["rps"] / over_http["rps"] if over_http["rps"] else float("inf")})
    finally:
        stop.set()
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()
        scratch.cleanup()

    print(f"serve benchmark: guide model, 1 instance per request, {args.seconds:g} s per cell, "
          f"{os.cpu_count()} CPUs, server in its own process")
    print(f"{'clients':>7} | {'HTTP rps':>9} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} | "
          f"{'in-proc rps':>11} {'p50 ms':>7} {'p99 ms':>7} | {'in-proc/HTTP':>12}")
    for row in rows:
        h, p = row["http"], row["in_process"]
        print(f"{row['clients']:>7} | {h['rps']:>9.0f} {h['p50_ms']:>7.2f} {h['p99_ms']:>7.2f} {h['errors']:>4} | "
              f"{p['rps']:>11.0f} {p['p50_ms']:>7.3f} {p['p99_ms']:>7.3f} | {row['overhead_ratio']:>11.1f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "serve", "seconds": args.seconds, "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "machine": platform.machine(), "model": str(args.model or "guide (built)"), "rows": rows,
    }, indent=2) + "\n")
    print(f"written {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
