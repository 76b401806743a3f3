"""Where a flow's own output goes while it runs: a log file, so a failure reads as one line.

Prefect prints each failed task's and flow's traceback, TensorFlow prints its C++ start-up chatter,
and Prefect's temporary server writes its own log; a user who ran one command needs one line saying
what went wrong and where to read the rest. While a flow runs, this process's standard error (the
file descriptor, so child processes and C++ libraries follow it) is pointed at a log file under
``FREEZEFLOW_HOME/logs``; the Prefect UI keeps every log line and traceback as before, and
``--verbose`` leaves standard error alone.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Iterator, Optional


_NO_LOCK = nullcontext()


def log_path(command: str) -> Path:
    """A new log file for one command: ``FREEZEFLOW_HOME/logs/COMMAND-YYYYmmdd-HHMMSS-PID.log``."""
    home = Path(os.environ.get("FREEZEFLOW_HOME") or ".freezeflow").expanduser()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return home / "logs" / f"{command}-{stamp}-{os.getpid()}.log"


@contextmanager
def stderr_to(path: Optional[Path]) -> Iterator[Optional[Path]]:
    """Standard error (descriptor 2 and ``sys.stderr``) goes to ``path`` inside the block; None: left alone."""
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        os.dup2(target, 2)
        yield path
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def terminal_say() -> Callable[[str], None]:
    """A ``say`` that writes one line to this process's standard error as it is now, even after ``stderr_to``
    has pointed descriptor 2 elsewhere."""
    terminal = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")

    def say(line: str) -> None:
        terminal.write(line + "\n")
        terminal.flush()

    return say


def keep_logging_to(path: Path) -> None:
    """After the flow, Prefect's console handlers write to ``path`` too, for the rest of the process.

    Prefect logs again at exit (stopping its temporary server, flushing events); those lines belong in
    the log with the rest, not under the error line.
    """
    stream = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open until the process ends
    for name in ("", "uvicorn", "fastapi"):
        for handler in logging.getLogger(name or None).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                with handler.lock or _NO_LOCK:  # not setStream: it flushes the old stream, which may be closed
                    handler.stream = stream
                console = getattr(handler, "console", None)  # Prefect's rich console holds the stream itself
                if console is not None:
                    console.file = stream
