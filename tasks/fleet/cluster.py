"""Which Dask cluster a batch runs on: an existing scheduler's address (checked within a bound before
anything is submitted), or a local cluster of worker processes.

No Prefect and no Dask at import: the CLI checks the address before it starts either.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from tasks.core.errors import ParameterError

ADDRESS_ENV = "FREEZEFLOW_DASK_ADDRESS"
DEFAULT_PORT = 8786
CONNECT_TIMEOUT = 10.0  # seconds; the CLI promises its one-line answer well within 30


class SchedulerUnreachable(ParameterError, ConnectionError):
    """The Dask scheduler named by --dask (or FREEZEFLOW_DASK_ADDRESS) does not answer."""


def scheduler_address(given: Optional[str]) -> Optional[str]:
    """The address a batch uses: the one given, else ``$FREEZEFLOW_DASK_ADDRESS``, else None (a local cluster)."""
    address = (given or os.environ.get(ADDRESS_ENV) or "").strip()
    return address or None


def host_port(address: str) -> tuple[str, int]:
    """``tcp://host:port`` (or ``host:port``, ``tls://...``) as host and port; a malformed one is refused."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme not in ("tcp", "tls"):
        raise ParameterError(f"Dask scheduler address {address!r}: use tcp://host:port (or tls://host:port)")
    host, colon, port = rest.rstrip("/").rpartition(":")
    if not colon:
        host, port = rest.rstrip("/"), str(DEFAULT_PORT)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ParameterError(f"Dask scheduler address {address!r}: use tcp://host:port, e.g. tcp://scheduler:8786")
    return host, int(port)


def check_scheduler(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Ask the scheduler who it is, so an unreachable one fails in seconds, by name.

    A TCP connect alone proves nothing behind a proxy that accepts every connection; the scheduler's
    own ``identity`` answer does.
    """
    import asyncio
    import socket

    host, port = host_port(address)
    url = address if "://" in address else f"tcp://{host}:{port}"
    try:  # a refused connection or an unknown host is known at once; Dask's own connect retries until its timeout
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = f"no answer within {timeout:g}s" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise SchedulerUnreachable(
            f"cannot reach the Dask scheduler at {address} ({reason}); start one with `dask scheduler` "
            f"or fix --dask / {ADDRESS_ENV}"
        ) from exc

    async def identity() -> dict[str, Any]:
        from distributed.core import rpc

        async with rpc(url, timeout=timeout) as scheduler:
            return await scheduler.identity()

    try:
        answer = asyncio.run(asyncio.wait_for(identity(), timeout))
    except (OSError, asyncio.TimeoutError) as exc:
        reason = f"no answer within {timeout:g}s" if isinstance(exc, asyncio.TimeoutError) else \
            " ".join(str(exc).split())[:160]
        raise SchedulerUnreachable(
            f"cannot reach the Dask scheduler at {address} ({reason}); start one with `dask scheduler` "
            f"or fix --dask / {ADDRESS_ENV}"
        ) from exc
    except Exception as exc:  # something answered, in another protocol (a proxy, a web server)
        raise SchedulerUnreachable(
            f"{address} answers, but not as a Dask scheduler ({type(exc).__name__}); pass the scheduler's "
            f"address (port 8786 by default) with --dask / {ADDRESS_ENV}"
        ) from exc
    if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        raise SchedulerUnreachable(f"{address} answers, but not as a Dask scheduler; "
                                   "pass the scheduler's address (port 8786 by default)")


def local_cluster_kwargs(workers: Optional[int]) -> dict[str, Any]:
    """A local cluster of ``workers`` processes (default: one per core), one conversion each at a time."""
    count = workers or os.cpu_count() or 1
    # ":0": a free port for the dashboard, so two batches on one machine do not fight over 8787
    return {"n_workers": count, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}


def stop_worker_profiler() -> None:
    """Stop the statistical profiler of the Dask worker this runs on (nothing outside a worker).

    Every 10 ms the profiler calls ``sys._current_frames()``, which holds the interpreter's thread-list
    lock while it allocates; a garbage collection there runs Dask's GC callback, which waits for the
    GIL, while a TensorFlow thread holding the GIL waits for that same lock to make a thread state
    (seen as a worker hung in SavedModel loading). A conversion needs no profile of itself.
    """
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    for name in ("profile", "profile-cycle"):
        callback = worker.periodic_callbacks.get(name)
        if callback is not None:
            worker.loop.add_callback(callback.stop)  # thread-safe: the callback belongs to the worker's loop

