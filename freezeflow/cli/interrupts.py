"""How a run the CLI started stops on Ctrl-C or SIGTERM: within a bound, its flow run marked, no process left.

Prefect's engine already turns a ``KeyboardInterrupt`` (Ctrl-C) or its own ``TerminationSignal``
(SIGTERM) in the flow's thread into a ``Crashed`` flow run, and the stages clean up after themselves
on the way out (a version is built in a staging folder that an exception removes). What it cannot
do is stop the stages running in the task runner's threads (freeze and export run side by side), and
the interpreter waits for those threads at exit; nor does it bound the time it spends reporting the
crash to an API that may be gone. So, while a flow runs:

* SIGINT and SIGTERM arm a watchdog, whichever Python handler is installed at the time (Prefect
  replaces the SIGTERM handler during a run): ``signal.set_wakeup_fd`` hands every signal to a
  thread that is not blocked by the main thread's work;
* the main thread gets the exception (``KeyboardInterrupt`` for Ctrl-C, SIGTERM through Prefect),
  the engine reports the crash, and this module marks the flow run ``Cancelled`` (the user asked
  for it; ``Crashed`` stays if the API does not answer within a second);
* then, or when the watchdog's grace runs out, whichever is first, every child process is stopped and
  the process ends at once (``os._exit``) with 130 (SIGINT) or 143 (SIGTERM), without waiting for
  stage threads whose work a later run redoes from the cache anyway.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, NoReturn, Optional

GRACE = 3.0  # seconds from the signal to the hard exit; with the steps after it, within the 5 s
MARK_TIMEOUT = 1.0  # seconds to spend marking the flow run Cancelled
LATE_MARK_TIMEOUT = 0.5  # the same after the grace ran out: the API is probably what held the run up
NAMES = {signal.SIGINT: "SIGINT (Ctrl-C)", signal.SIGTERM: "SIGTERM"}
RESUMES = "stages that finished are cached, so running it again resumes there"


class Interrupted(BaseException):
    """Raised in the main thread when the run is asked to stop (a BaseException, as KeyboardInterrupt is)."""

    def __init__(self, signum: int) -> None:
        super().__init__(NAMES.get(signum, f"signal {signum}"))
        self.signum = signum


class RunGuard:
    """Context manager around one flow call; ``note_flow_run`` is the flow's ``on_running`` hook."""

    def __init__(self, grace: float = GRACE, say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
                 next_run: str = RESUMES, on_interrupt: Optional[Callable[[str, Optional[str]], None]] = None):
        self.grace = grace
        self.say = say
        self.next_run = next_run  # what the interruption line says about running it again
        # Called with that line and the flow run's id just before the process ends (smoke's JUnit report);
        # it must be quick: the process ends within the grace whatever it does.
        self.on_interrupt = on_interrupt
        self.flow_run_id: Optional[str] = None
        self.signum: Optional[int] = None
        self._armed = threading.Event()
        self._finishing = threading.Lock()
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1
        self._reader: Optional[socket.socket] = None
        self._writer: Optional[socket.socket] = None

    # -- hooks ------------------------------------------------------------------------------------

    def note_flow_run(self, flow: Any, flow_run: Any, state: Any) -> None:
        self.flow_run_id = str(flow_run.id)

    # -- installing -------------------------------------------------------------------------------

    def __enter__(self) -> "RunGuard":
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach only the main thread; nothing to guard (e.g. a test runner's thread)
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(True)
        self._writer.setblocking(False)
        self._previous_wakeup = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        threading.Thread(target=self._watch, name="freezeflow-interrupt-watch", daemon=True).start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self._previous:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        self._previous.clear()
        if self._writer is not None:
            self._writer.close()  # ends the watch thread

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        """Our handler (SIGINT always; SIGTERM outside Prefect's run, or when Prefect passes it on)."""
        self._arm(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(signum)

    def _watch(self) -> None:
        assert self._reader is not None
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in NAMES:
                    self._arm(signum)

    def _arm(self, signum: int) -> None:
        if self._armed.is_set():
            return
        self.signum = signum
        self._armed.set()
        threading.Thread(target=self._deadline, name="freezeflow-interrupt-deadline", daemon=True).start()

    def _deadline(self) -> None:
        time.sleep(self.grace)
        self.finish(f"the run did not stop within {self.grace:g} s; stopped it", mark_timeout=LATE_MARK_TIMEOUT)

    # -- finishing --------------------------------------------------------------------------------

    @property
    def interrupted(self) -> bool:
        return self._armed.is_set()

    def finish(self, why: str = "", mark_timeout: float = MARK_TIMEOUT) -> NoReturn:
        """Mark the flow run Cancelled (bounded), stop child processes, and end the process now."""
        with self._finishing:  # the main thread and the deadline may both get here; the first one ends it
            signum = self.signum or signal.SIGINT
            marked = self._mark_cancelled(signum, mark_timeout)
            stop_children()
            where = f"flow run {self.flow_run_id} {marked}" if self.flow_run_id else "no flow run had started"
            line = (f"error: interrupted by {NAMES.get(signum, signum)}; {where}; nothing is half-published; "
                    f"{self.next_run}" + (f" ({why})" if why else ""))
            if self.on_interrupt is not None:
                try:
                    self.on_interrupt(line, self.flow_run_id)
                except Exception as exc:  # the report is a courtesy; stopping is what was asked
                    self.say(f"warning: {exc}")
            self.say(line)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(128 + int(signum))

    def _mark_cancelled(self, signum: int, timeout: float) -> str:
        """Set the flow run Cancelled, in a thread given ``timeout`` seconds; returns what the API was told."""
        if self.flow_run_id is None:
            return ""
        outcome = {"text": "left Crashed (the API did not confirm Cancelled in time)"}

        def mark() -> None:
            from prefect.client.orchestration import get_client
            from prefect.states import Cancelled

            with get_client(sync_client=True) as client:
                client.set_flow_run_state(self.flow_run_id, Cancelled(message=f"Cancelled by {NAMES[signum]}"),
                                          force=True)
            outcome["text"] = "marked Cancelled"

        worker = threading.Thread(target=mark, daemon=True)
        worker.start()
        worker.join(timeout)
        return outcome["text"]


def stop_children(grace: float = 0.5) -> None:
    """SIGTERM every descendant process (Prefect's temporary server, say), then SIGKILL what is left."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
