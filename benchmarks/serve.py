"""Benchmark: ``freezeflow serve`` under load, against its previous HTTP layer measured in the same run.

For each concurrency level (8 and 64 clients by default) it measures requests per second and p50/p99
latency of ``POST /v1/models/linear:predict`` (the guide's request, one instance) against three
servers, each in its own process, all started first and then measured in turn, round after round (so a
change in the machine's load falls on all of them alike):

- ``baseline``: the previous ``ThreadingHTTPServer`` layer (``benchmarks/serve_baseline.py``);
- ``uvicorn``: today's server (uvicorn + Starlette), no batching;
- ``batching``: today's server with ``--batching`` (TF Serving's defaults otherwise).

The targets of issue 13 are ratios within the run: rps at 64 clients at least the rps at 8, p99 at 64
clients at most 50 ms, and with batching at least twice the baseline's rps at 64 clients. The clients
are connections on one event loop of this process, each sending requests back to back over
keep-alive, the same for every server. Each cell also shows the server process's CPU time per request
(from /proc), which does not depend on what else the machine runs.
``--in-process`` adds the model called directly from as many threads (the price of JSON and HTTP).
Prints a table and writes ``benchmarks/results/serve.json``.

    .venv/bin/python benchmarks/serve.py --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import socket
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
SERVERS = ("baseline", "uvicorn", "batching")
P99_TARGET_MS = 50.0
BATCHING_TARGET = 2.0


def build_guide_model(folder: Path) -> Path:
    """The guide's y = 0.5x + 1, checkpointed in TF1 format and exported by the pipeline's own export stage."""
    import tensorflow as tf

    from tasks.tf.checkpoints import describe_checkpoint
    from tasks.tf.saved_models import export_saved_model

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


def _serve(kind: str, model: str, ports: Any, stop: Any) -> None:
    """A server process: the baseline, or what ``freezeflow serve MODEL --port 0 [--batching]`` runs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if kind == "baseline":
        sys.path.insert(0, str(REPO / "benchmarks"))
        from serve_baseline import BaselineServer

        server: Any = BaselineServer(model, "linear")
    else:
        from tasks.serving.batching import BatchingOptions
        from tasks.serving.server import open_server

        server = open_server(model, model_name="linear", port=0,
                             batching=BatchingOptions() if kind == "batching" else None)
    with server.start():
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
    every = [t for own in latencies for t in own]
    return {"latencies": every, "elapsed": elapsed, "errors": len(errors), "rps": len(every) / elapsed}


async def _http_clients(port: int, clients: int, seconds: float, request: bytes, expected: bytes) -> dict[str, Any]:
    """``clients`` connections on one event loop, each sending the request back to back (keep-alive).

    A raw HTTP/1.1 client: the request's bytes are built once and an answer is read by its
    Content-Length, so the load generator spends little CPU per request and the servers, not the
    clients, are what the shared cores are spent on (http.client in 64 threads used more CPU than
    the server it measured).
    """
    latencies: list[float] = []
    errors: list[str] = []
    ready = asyncio.Event()
    deadline = [0.0]

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await ready.wait()
        try:
            while (began := time.perf_counter()) < deadline[0]:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - began)
                if not head.startswith(b"HTTP/1.1 200") or body != expected:
                    errors.append(f"{head.split(b' ', 2)[1:2]} {body[:100]!r}")
        finally:
            writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(0.05)  # let every connection open before the clock starts
    began = time.perf_counter()
    deadline[0] = began + seconds
    ready.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors += [repr(r) for r in results if isinstance(r, BaseException)]
    elapsed = time.perf_counter() - began
    return {"latencies": latencies, "elapsed": elapsed, "errors": len(errors), "rps": len(latencies) / elapsed}


class ServerProcess:
    """One server in its own process (a fresh one: it shares no GIL with the clients), and a client for it."""

    body = json.dumps({"instances": [{"inputs": 6.0}]}).encode()
    expected = b'{"predictions":[4.0]}'

    def __init__(self, kind: str, model: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self.kind = kind
        self._ports, self._stop = context.Queue(), context.Event()
        self._process = context.Process(target=_serve, args=(kind, str(model), self._ports, self._stop), daemon=True)
        self._process.start()
        self.port = 0

    def wait_ready(self) -> "ServerProcess":
        self.port = self._ports.get(timeout=300)
        self.measure(8, 0.5)  # warm up: first calls trace functions, open connections
        return self

    def measure(self, clients: int, seconds: float) -> dict[str, Any]:
        request = (b"POST /v1/models/linear:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: " + str(len(self.body)).encode() + b"\r\n\r\n" + self.body)
        cpu = self.cpu_seconds()
        cell = asyncio.run(_http_clients(self.port, clients, seconds, request, self.expected))
        cell["cpu_seconds"] = self.cpu_seconds() - cpu
        return cell

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process, all its threads (Linux /proc)."""
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self._stop.set()
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one cell as one measurement: all requests over all the time, percentiles over all latencies."""
    every = sorted(t for part in parts for t in part["latencies"])
    elapsed = sum(part["elapsed"] for part in parts)
    return {
        "requests": len(every),
        "errors": sum(part["errors"] for part in parts),
        "rps": len(every) / elapsed,
        "p50_ms": statistics.median(every) * 1000 if every else float("nan"),
        "p99_ms": every[min(len(every) - 1, int(len(every) * 0.99))] * 1000 if every else float("nan"),
        "rounds_rps": [round(part["rps"], 1) for part in parts],
        "server_cpu_us_per_request": (sum(part.get("cpu_seconds", float("nan")) for part in parts) / len(every) * 1e6
                                      if every else float("nan")),
    }


def measure_servers(kinds: list[str], model: Path, levels: list[int], seconds: float,
                    rounds: int) -> dict[str, dict[int, dict[str, Any]]]:
    """Every server up at once, measured in turn, round after round: a change in the machine's load (other
    programs on shared cores) falls on every server alike instead of on whichever ran at that moment."""
    servers = [ServerProcess(kind, model) for kind in kinds]
    try:
        for server in servers:
            server.wait_ready()
        parts: dict[str, dict[int, list[dict[str, Any]]]] = {k: {c: [] for c in levels} for k in kinds}
        for _ in range(rounds):
            for clients in levels:
                for server in servers:
                    parts[server.kind][clients].append(server.measure(clients, seconds / rounds))
        return {kind: {c: merge(cells) for c, cells in rows.items()} for kind, rows in parts.items()}
    finally:
        for server in servers:
            server.stop()


def measure_in_process(model: Path, levels: list[int], seconds: float) -> dict[int, dict[str, Any]]:
    import numpy as np

    from tasks.serving.repository import load_version

    loaded = load_version(model, 1)

    def in_process_call(_: Any) -> None:
        out = loaded.predict("serving_default", {"inputs": np.array([6.0], dtype=np.float32)})
        if out["outputs"].tolist() != [4.0]:
            raise RuntimeError(str(out))

    run_clients(4, 0.5, in_process_call, lambda: None)
    return {clients: merge([run_clients(clients, seconds, in_process_call, lambda: None)]) for clients in levels}


def targets(cells: dict[str, dict[int, dict[str, Any]]], low: int, high: int) -> list[dict[str, Any]]:
    """Issue 13's targets as ratios within this run."""
    found = []
    for kind in ("uvicorn", "batching"):
        ratio = cells[kind][high]["rps"] / cells[kind][low]["rps"]
        found.append({"target": f"{kind}: rps at {high} clients / rps at {low} clients >= 1", "value": ratio,
                      "met": ratio >= 1.0})
        p99 = cells[kind][high]["p99_ms"]
        found.append({"target": f"{kind}: p99 at {high} clients <= {P99_TARGET_MS:g} ms", "value": p99,
                      "met": p99 <= P99_TARGET_MS})
    ratio = cells["batching"][high]["rps"] / cells["baseline"][high]["rps"]
    found.append({"target": f"batching rps / baseline rps at {high} clients >= {BATCHING_TARGET:g}", "value": ratio,
                  "met": ratio >= BATCHING_TARGET})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="Time measured per server and concurrency level, over all rounds (default 3).")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds the time is split into (default 3).")
    parser.add_argument("--clients", default="8,64", help="Comma-separated concurrency levels (default 8,64).")
    parser.add_argument("--model", help="A SavedModel version folder; default: build the guide's model.")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"Comma-separated servers to measure (default {','.join(SERVERS)}; the targets need all).")
    parser.add_argument("--in-process", action="store_true", help="Also call the model in-process, without HTTP.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not 0 < args.seconds <= 60:
        parser.error("--seconds must be in (0, 60]")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be in [1, 20]")
    levels = sorted({int(c) for c in args.clients.split(",")})
    servers = [s for s in SERVERS if s in args.servers.split(",")]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    scratch = tempfile.TemporaryDirectory(prefix="freezeflow-bench-")
    try:
        model = Path(args.model) if args.model else build_guide_model(Path(scratch.name))
        cells = measure_servers(servers, model, levels, args.seconds, args.rounds)
        if args.in_process:
            cells["in_process"] = measure_in_process(model, levels, args.seconds)
    finally:
        scratch.cleanup()

    print(f"serve benchmark: guide model, 1 instance per request, {args.seconds:g} s per cell in {args.rounds} "
          f"round(s), {os.cpu_count()} CPUs, each server in its own process, clients in this one")
    print(f"{'server':>10} {'clients':>7} | {'rps':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'server CPU/request':>18} | rps per round")
    for kind, rows in cells.items():
        for clients, cell in rows.items():
            print(f"{kind:>10} {clients:>7} | {cell['rps']:>7.0f} {cell['p50_ms']:>7.2f} {cell['p99_ms']:>7.2f} "
                  f"{cell['errors']:>6} {cell['server_cpu_us_per_request']:>15.0f} µs | "
                  f"{' '.join(f'{r:.0f}' for r in cell['rounds_rps'])}")
    found = targets(cells, levels[0], levels[-1]) if len(levels) > 1 and len(servers) == len(SERVERS) else []
    for item in found:
        print(f"{'met ' if item['met'] else 'MISSED'} {item['target']}: {item['value']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "serve", "seconds": args.seconds, "rounds": args.rounds, "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(), "model": str(args.model or "guide (built)"),
        "cells": {kind: {str(c): cell for c, cell in rows.items()} for kind, rows in cells.items()},
        "targets": found,
    }, indent=2) + "\n")
    print(f"written {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
