"""The reading side of an upload: files read (and checksummed) for sending, progress as a bar and an artifact.

Workers only record how far they have read; the publishing thread renders. Prefect's artifact calls
need the run context, which lives in the thread that runs the task, so they happen there too.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import sys
import threading
import time
from typing import Any, BinaryIO, Optional, TextIO

import google_crc32c

logger = logging.getLogger("freezeflow.gcs")

_MIB = float(1 << 20)


class UploadCancelled(Exception):
    """Raised inside a worker's read when another file already failed: stop sending, clean up sooner."""


class UploadProgress:
    """Bytes sent so far, over every file of one publish."""

    def __init__(
        self,
        total_bytes: int,
        label: str,
        *,
        show_bar: Optional[bool] = None,
        stream: Optional[TextIO] = None,
        artifact_key: Optional[str] = None,
        artifact_min_bytes: int = 64 << 20,
    ) -> None:
        self.total = max(total_bytes, 1)
        self.label = label
        self.stream = stream or sys.stderr
        # None: a bar only on a terminal, so logs and CI output stay clean.
        self.show_bar = _isatty(self.stream) if show_bar is None else show_bar
        self._high_water: dict[int, int] = {}
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_bar = 0.0
        self._last_artifact = 0.0
        self._artifact_id: Any = None
        if artifact_key and total_bytes >= artifact_min_bytes and _in_prefect_run():
            self._artifact_id = _call_prefect("create_progress_artifact", progress=0.0, key=artifact_key,
                                              description=f"Upload of {label}")

    def advance(self, file_index: int, position: int) -> None:
        """Called from worker threads: the furthest byte read so far of one file (re-sent bytes count once)."""
        with self._lock:
            if position > self._high_water.get(file_index, 0):
                self._high_water[file_index] = position

    @property
    def sent(self) -> int:
        with self._lock:
            return sum(self._high_water.values())

    def render(self, final: bool = False) -> None:
        """Redraw the bar and update the artifact, at most a few times a second; call from the publishing thread."""
        now = time.monotonic()
        sent = self.total if final else self.sent
        if self.show_bar and (final or now - self._last_bar >= 0.2):
            self._last_bar = now
            rate = sent / _MIB / max(now - self._started, 1e-6)
            width = 30
            filled = int(width * sent / self.total)
            self.stream.write(f"\r{self.label}  [{'#' * filled}{'.' * (width - filled)}] "
                              f"{sent / _MIB:8.1f}/{self.total / _MIB:.1f} MiB  {rate:6.1f} MiB/s")
            if final:
                self.stream.write("\n")
            self.stream.flush()
        if self._artifact_id is not None and (final or now - self._last_artifact >= 2.0):
            self._last_artifact = now
            if _call_prefect("update_progress_artifact", artifact_id=self._artifact_id,
                             progress=round(100.0 * sent / self.total, 1)) is None:
                self._artifact_id = None  # warned once; stop calling an API that does not answer

    def close(self, completed: bool) -> None:
        if completed:
            self.render(final=True)
        elif self.show_bar:
            self.stream.write("\n")
            self.stream.flush()


class UploadReader(io.RawIOBase):
    """A file opened for upload: checksums the bytes it hands out, reports progress, stops when cancelled.

    The client reads forward and, to resend a chunk, seeks back and reads it again; only bytes past the
    furthest point read so far go into the checksums, so they cover each byte once, in order.
    """

    def __init__(self, handle: BinaryIO, index: int, progress: UploadProgress, cancelled: threading.Event) -> None:
        super().__init__()
        self._handle = handle
        self._index = index
        self._progress = progress
        self._cancelled = cancelled
        self._sha256 = hashlib.sha256()
        self._crc32c = google_crc32c.Checksum()
        self._checksummed = 0  # bytes [0, _checksummed) are in both checksums
        self._skipped = False  # a forward seek past unread bytes: the checksums cannot cover the file

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._cancelled.is_set():
            raise UploadCancelled("another file of this publish failed")
        start = self._handle.tell()
        data = self._handle.read(size)
        end = start + len(data)
        if start > self._checksummed and data:
            self._skipped = True
        elif end > self._checksummed:
            fresh = data if start == self._checksummed else data[self._checksummed - start:]  # copies only on overlap
            self._sha256.update(fresh)
            self._crc32c.update(fresh)
            self._checksummed = end
        self._progress.advance(self._index, end)
        return data

    def checksums(self, size: int) -> Optional[tuple[str, str]]:
        """SHA-256 (hex) and CRC32C (base64, as GCS reports it) of all ``size`` bytes, if they were all read."""
        if self._skipped or self._checksummed != size:
            return None
        return self._sha256.hexdigest(), base64.b64encode(self._crc32c.digest()).decode()

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _in_prefect_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


def _call_prefect(name: str, **kwargs: Any) -> Any:
    """Progress reporting must never fail a publish: an unreachable API costs the artifact, not the upload."""
    import prefect.artifacts

    try:
        return getattr(prefect.artifacts, name)(**kwargs)
    except Exception as exc:  # reporting only; the upload itself is checked elsewhere
        logger.warning("could not %s (%s); the upload goes on", name.replace("_", " "), exc)
        return None
