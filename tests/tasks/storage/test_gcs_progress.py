"""The reading side of an upload: checksums that cover each byte once, progress that counts resent bytes once."""

from __future__ import annotations

import base64
import hashlib
import io
import threading

import google_crc32c
import pytest

from tasks.storage.gcs_progress import UploadCancelled, UploadProgress, UploadReader

DATA = bytes(range(256)) * 40  # 10 KiB


def _expected(data: bytes) -> tuple[str, str]:
    return hashlib.sha256(data).hexdigest(), base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def _reader(progress: UploadProgress, cancelled: threading.Event | None = None, index: int = 0) -> UploadReader:
    return UploadReader(io.BytesIO(DATA), index, progress, cancelled or threading.Event())


def _quiet(total: int = len(DATA)) -> UploadProgress:
    return UploadProgress(total, "linear v1", show_bar=False)


def test_a_straight_read_checksums_the_whole_file() -> None:
    reader = _reader(_quiet())
    while reader.read(1000):
        pass
    assert reader.checksums(len(DATA)) == _expected(DATA)


def test_a_chunk_resent_after_seeking_back_is_checksummed_and_counted_once() -> None:
    progress = _quiet()
    reader = _reader(progress)
    reader.read(4096)
    reader.seek(1024)  # the client resends from the last byte the server confirmed
    reader.read(4096)
    assert progress.sent == 1024 + 4096
    while reader.read(4096):
        pass
    assert reader.checksums(len(DATA)) == _expected(DATA)
    assert progress.sent == len(DATA)


def test_readinto_feeds_the_same_checksums() -> None:
    reader = _reader(_quiet())
    buffer = bytearray(3000)
    while reader.readinto(buffer):
        pass
    assert reader.checksums(len(DATA)) == _expected(DATA)


def test_a_forward_skip_leaves_no_checksum_to_trust() -> None:
    reader = _reader(_quiet())
    reader.read(100)
    reader.seek(5000)
    while reader.read(1000):
        pass
    assert reader.checksums(len(DATA)) is None


def test_a_partial_read_has_no_checksum_for_the_whole_size() -> None:
    reader = _reader(_quiet())
    reader.read(100)
    assert reader.checksums(len(DATA)) is None


def test_a_cancelled_upload_stops_at_the_next_read() -> None:
    cancelled = threading.Event()
    reader = _reader(_quiet(), cancelled)
    reader.read(10)
    cancelled.set()
    with pytest.raises(UploadCancelled, match="another file of this publish failed"):
        reader.read(10)


def test_progress_sums_the_furthest_point_of_each_file_from_many_threads() -> None:
    progress = UploadProgress(8 * 1000, "m v1", show_bar=False)

    def send(index: int) -> None:
        for position in range(0, 1001, 50):
            progress.advance(index, position)
        progress.advance(index, 10)  # a late, smaller report never moves a file back

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert progress.sent == 8 * 1000


def test_the_bar_shows_the_label_and_totals_and_ends_its_line_when_done() -> None:
    stream = io.StringIO()
    progress = UploadProgress(2 << 20, "linear v1", show_bar=True, stream=stream)
    progress.advance(0, 1 << 20)
    progress.render()
    assert "linear v1" in stream.getvalue() and "1.0/2.0 MiB" in stream.getvalue()
    progress.close(completed=True)
    assert stream.getvalue().endswith("\n") and "2.0/2.0 MiB" in stream.getvalue()


def test_no_bar_off_a_terminal_and_a_failed_upload_still_ends_the_bar_line() -> None:
    assert UploadProgress(10, "x", stream=io.StringIO()).show_bar is False  # a StringIO is no terminal
    stream = io.StringIO()
    progress = UploadProgress(10, "x", show_bar=True, stream=stream)
    progress.close(completed=False)
    assert stream.getvalue() == "\n"


def test_no_artifact_is_created_outside_a_prefect_run() -> None:
    progress = UploadProgress(1 << 30, "big v1", show_bar=False, artifact_key="big-upload", artifact_min_bytes=1)
    assert progress._artifact_id is None
