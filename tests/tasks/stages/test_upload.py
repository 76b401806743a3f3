"""The upload stage: which failures are retried."""

from __future__ import annotations

from prefect.states import Failed

from tasks.core.errors import PermanentDestinationError, TransientDestinationError
from tasks.stages.upload import _is_transient, upload


def test_only_transient_errors_are_retried() -> None:
    assert upload.retries == 3 and upload.retry_condition_fn is _is_transient
    assert _is_transient(upload, None, Failed(data=TransientDestinationError("503 from the bucket")))
    assert not _is_transient(upload, None, Failed(data=PermanentDestinationError("403 forbidden")))
    assert not _is_transient(upload, None, Failed(data=ValueError("a bug")))
