"""The GCS error classifier: which failures a retry can fix, what the user reads, and that no URL leaks."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from tasks.core.errors import PermanentDestinationError, TransientDestinationError
from tasks.storage.gcs_errors import classify, reason, status_of

WHAT = "uploading gs://b/m/linear/1"


def _response(status: int, body: str = "") -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    return response


@pytest.mark.parametrize("exc", [
    api_exceptions.TooManyRequests("slow down"),
    api_exceptions.ServiceUnavailable("backend busy"),
    api_exceptions.InternalServerError("oops"),
    api_exceptions.PreconditionFailed("generation changed"),
    api_exceptions.Conflict("concurrent change"),
    api_exceptions.NotFound("resumable session gone"),
    requests.exceptions.ConnectionError("connection reset by peer"),
    TimeoutError("read timed out"),
    auth_exceptions.TransportError("metadata server unreachable"),
], ids=lambda e: type(e).__name__)
def test_failures_a_retry_can_fix_are_transient(exc: BaseException) -> None:
    classified = classify(exc, WHAT, "b")
    assert isinstance(classified, TransientDestinationError)
    assert str(classified).startswith(WHAT + ": ")


def test_data_corruption_is_transient_the_client_already_removed_the_object() -> None:
    corrupted = DataCorruption(_response(200), "checksum mismatch")
    assert isinstance(classify(corrupted, WHAT, "b"), TransientDestinationError)


def test_permission_denied_names_the_role_and_the_bucket() -> None:
    classified = classify(api_exceptions.Forbidden("caller lacks storage.objects.create"), WHAT, "b")
    assert isinstance(classified, PermanentDestinationError)
    assert "HTTP 403: caller lacks storage.objects.create" in str(classified)
    assert "roles/storage.objectAdmin" in str(classified) and "bucket b" in str(classified)


def test_a_404_on_a_listing_is_a_missing_bucket_and_permanent() -> None:
    classified = classify(api_exceptions.NotFound("no such bucket"), "listing gs://b/m", "b", missing_bucket=True)
    assert isinstance(classified, PermanentDestinationError)
    assert "bucket b does not exist; create it or fix the bucket in --dest" in str(classified)


def test_other_client_errors_are_permanent_and_point_at_dest() -> None:
    classified = classify(api_exceptions.BadRequest("invalid object name"), WHAT, "b")
    assert isinstance(classified, PermanentDestinationError)
    assert str(classified).endswith("check the bucket and prefix in --dest")


def test_missing_or_refused_credentials_say_how_to_log_in() -> None:
    missing = classify(auth_exceptions.DefaultCredentialsError("no ADC"), WHAT, "b")
    assert isinstance(missing, PermanentDestinationError) and "gcloud auth application-default login" in str(missing)
    refused = classify(auth_exceptions.RefreshError("invalid_grant"), WHAT, "b")
    assert isinstance(refused, PermanentDestinationError) and "refused to exchange the credentials" in str(refused)


def test_retries_running_out_is_transient_and_keeps_the_cause() -> None:
    exhausted = api_exceptions.RetryError("deadline", cause=api_exceptions.ServiceUnavailable("busy"))
    classified = classify(exhausted, WHAT, "b")
    assert isinstance(classified, TransientDestinationError)
    assert "still failing when retries ran out (HTTP 503: busy)" in str(classified)


def test_a_bug_is_not_dressed_up_as_a_destination_error() -> None:
    bug = KeyError("files")
    assert classify(bug, WHAT, "b") is bug


def test_reason_never_carries_a_resumable_session_url() -> None:
    session = "https://storage.googleapis.com/upload/storage/v1/b/b/o?uploadType=resumable&upload_id=SECRET"
    exc = InvalidResponse(_response(503, "busy"), f"PUT {session}: unexpected status")
    text = reason(exc)
    assert "SECRET" not in text and "https://" not in text
    assert text.startswith("HTTP 503")


def test_reason_prefers_the_json_message_of_an_error_body() -> None:
    exc = InvalidResponse(_response(400), 'Bad request: {"error": {"code": 400, "message": "Invalid bucket name"}}')
    assert reason(exc) == "HTTP 400: Invalid bucket name"


def test_status_of_reads_each_layer_of_the_client() -> None:
    assert status_of(api_exceptions.Forbidden("x")) == 403
    assert status_of(InvalidResponse(_response(502), "bad gateway")) == 502
    assert status_of(DataCorruption(_response(200), "crc")) is None
    assert status_of(ValueError("x")) is None
