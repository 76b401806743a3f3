"""A flow that does almost nothing: it appends one line per execution to a file named by its flow run id,
so a load test can tell a run that never ran from one that ran twice."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow


@flow(name="light", persist_result=False)
def light(out_dir: str, n: int = 0) -> int:
    from prefect.runtime import flow_run

    fd = os.open(Path(out_dir) / str(flow_run.id), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())  # one write below PIPE_BUF: appends never interleave
    finally:
        os.close(fd)
    return n
