"""Benchmark: publishing a SavedModel-sized folder to GCS (the emulator) against plain sequential uploads.

Generates a SavedModel-like folder (saved_model.pb, variables.index, a few variables.data shards of
random bytes, frozen_graph.pb) in a temporary directory, starts fake-gcs-server on loopback, and times

* ``freezeflow``: GCSDestination.publish: local SHA-256 + CRC32C, claim, parallel resumable uploads,
  verification of every object, manifest;
* ``freezeflow, 1 worker``: the same with one upload thread, to separate parallelism from the rest;
* ``baseline``: ``blob.upload_from_filename`` of each file in turn, with the client's defaults (100 MiB
  resumable chunks, its own CRC32C check), nothing else verified.

fake-gcs-server spends time per chunk that grows with the object (smaller chunks are slower there
than on GCS), and on a small shared machine threads compete with the emulator for CPU: read the
numbers as a comparison on one machine, not as GCS throughput.

Prints a table and writes JSON to benchmarks/results/upload.json. Usage:

    python benchmarks/upload.py                  # about 1 GiB of variables
    python benchmarks/upload.py --size-mib 64    # a quick run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the emulator helpers live beside the tests

from google.api_core.client_options import ClientOptions  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import storage  # noqa: E402

from tasks.core import layout  # noqa: E402
from tasks.storage.base import PublishFile  # noqa: E402
from tasks.storage.gcs import GCSDestination  # noqa: E402
from tests.gcs_support import Emulator  # noqa: E402

MIB = 1 << 20


def make_saved_model(folder: Path, size_mib: int, shards: int) -> list[PublishFile]:
    """A folder shaped like a SavedModel plus frozen graph; variables are random, so nothing compresses."""
    variables = folder / "variables"
    variables.mkdir(parents=True)
    sizes = {layout.SAVED_MODEL: 256 * 1024, "variables/variables.index": 16 * 1024, layout.FROZEN_GRAPH: 2 * MIB}
    shard = size_mib * MIB // shards
    for i in range(shards):
        sizes[f"variables/variables.data-{i:05d}-of-{shards:05d}"] = shard
    files = []
    for name, size in sizes.items():
        path = folder / name
        digest = hashlib.sha256()
        with open(path, "wb") as handle:
            for start in range(0, size, 8 * MIB):
                block = os.urandom(min(8 * MIB, size - start))
                digest.update(block)
                handle.write(block)
        files.append(PublishFile(source=path, name=name, sha256=digest.hexdigest(), size=size))
    return files


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def check_uploaded(bucket: storage.Bucket, prefix: str, files: list[PublishFile]) -> None:
    """Every object there with its size; the CRC32C check is GCSDestination's own (and the client's)."""
    found = {b.name[len(prefix):]: b.size for b in bucket.client.list_blobs(bucket, prefix=prefix)}
    for item in files:
        if found.get(item.name) != item.size:
            raise SystemExit(f"benchmark: {prefix}{item.name} is missing or has the wrong size")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="Total size of the variables shards (MiB).")
    parser.add_argument("--shards", type=int, default=4, help="Number of variables.data shards.")
    parser.add_argument("--workers", type=int, default=GCSDestination.max_workers, help="Upload threads.")
    parser.add_argument("--chunk-mib", type=int, default=GCSDestination.chunk_size // MIB,
                        help="Resumable chunk size (MiB).")
    parser.add_argument("--repeat", type=int, default=1,
                        help="Runs of each method, interleaved; the table shows the fastest (a busy machine is noisy).")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "upload.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="freezeflow-bench-") as tmp:
        root = Path(tmp)
        print(f"generating {args.size_mib} MiB of variables in {args.shards} shards ...", file=sys.stderr)
        files = make_saved_model(root / "model", args.size_mib, args.shards)
        total = sum(f.size for f in files)
        server = Emulator(root / "gcs").start()
        os.environ["STORAGE_EMULATOR_HOST"] = server.url
        try:
            client = storage.Client(project="bench", credentials=AnonymousCredentials(),
                                    client_options=ClientOptions(api_endpoint=server.url))
            bucket = client.create_bucket("freezeflow-bench")

            def publish(prefix: str, workers: int) -> None:
                destination = GCSDestination(bucket.name, prefix, max_workers=workers, chunk_size=args.chunk_mib * MIB)
                publication = destination.publish("bench", files, {"benchmark": True})
                check_uploaded(bucket, f"{prefix}/bench/{publication.version}/", files)

            def baseline(prefix: str) -> None:
                for item in files:
                    bucket.blob(f"{prefix}/bench/1/{item.name}").upload_from_filename(str(item.source))
                check_uploaded(bucket, f"{prefix}/bench/1/", files)

            methods: dict[str, Callable[[str], None]] = {
                "baseline: sequential upload_from_filename": baseline,
                f"freezeflow publish, {args.workers} workers": lambda prefix: publish(prefix, args.workers),
                "freezeflow publish, 1 worker": lambda prefix: publish(prefix, 1),
            }
            runs: dict[str, list[float]] = {method: [] for method in methods}
            for attempt in range(args.repeat):
                for number, (method, run) in enumerate(methods.items()):
                    # A fresh prefix each time: a publish of content already there would be a no-op.
                    runs[method].append(timed(lambda: run(f"run{attempt}-{number}")))
        finally:
            server.stop()
    rows = [{"method": method, "files": len(files), "mib": total / MIB, "seconds": min(times),
             "mib_per_s": total / MIB / min(times), "all_seconds": times} for method, times in runs.items()]

    print(f"\n{'method':<45} {'files':>5} {'MiB':>8} {'s':>8} {'MiB/s':>8}")
    for row in rows:
        print(f"{row['method']:<45} {row['files']:>5} {row['mib']:>8.1f} {row['seconds']:>8.2f} "
              f"{row['mib_per_s']:>8.1f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "benchmark": "upload", "size_mib": args.size_mib, "shards": args.shards, "workers": args.workers,
        "chunk_mib": args.chunk_mib, "repeat": args.repeat, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "google_cloud_storage": storage.__version__, "emulator": "fake-gcs-server (filesystem backend, loopback)",
        "rows": rows,
    }, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
