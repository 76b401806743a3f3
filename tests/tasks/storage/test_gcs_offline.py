"""gs:// without a way to Google: credentials present but no name resolves, a refused token exchange, a server
that never answers. Each ends in one whole line naming the host and what to check, within the command's
``--timeout`` (default 60 s), instead of minutes of retries."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cli import run_freezeflow
from tests.support.offline import RefusingTokenServer, SilentServer, service_account_file

OFFLINE = ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "HTTPS_PROXY", "https_proxy")


@pytest.fixture
def refusing_token_server() -> Iterator[RefusingTokenServer]:
    server = RefusingTokenServer()
    yield server
    server.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_ls_with_credentials_and_no_dns_names_the_host_at_once(tmp_path: Path) -> None:
    # '.invalid' never resolves (RFC 2606), on a machine with a network or without one.
    key = service_account_file(tmp_path, "https://oauth2.invalid/token")
    outcome = run_freezeflow("ls", "gs://freezeflow-offline/models", cwd=tmp_path, drop=OFFLINE,
                             env={"GOOGLE_APPLICATION_CREDENTIALS": str(key)}, timeout=60)

    assert outcome.code == 1
    assert outcome.error_lines == [
        "error: listing models at gs://freezeflow-offline/models: cannot reach oauth2.invalid: its name does not "
        "resolve; check the network connection, DNS and any proxy settings (HTTPS_PROXY)"]
    assert "Traceback" not in outcome.stderr


def test_convert_to_gs_with_no_dns_fails_before_any_stage_runs(tmp_path: Path, guide_checkpoint: Path) -> None:
    key = service_account_file(tmp_path, "https://oauth2.invalid/token")
    outcome = run_freezeflow("convert", str(guide_checkpoint), "--output-node", "y", "--dest",
                             "gs://freezeflow-offline/models", cwd=tmp_path, drop=OFFLINE,
                             env={"GOOGLE_APPLICATION_CREDENTIALS": str(key)}, timeout=60)

    assert outcome.code == 1
    assert len(outcome.error_lines) == 1
    assert "cannot reach oauth2.invalid: its name does not resolve" in outcome.error_lines[0]
    assert "Flow run" not in outcome.stderr and "Traceback" not in outcome.stderr  # Prefect never started


def test_a_refused_token_exchange_is_not_retried_and_names_the_token_server(
        tmp_path: Path, refusing_token_server: RefusingTokenServer) -> None:
    key = service_account_file(tmp_path, refusing_token_server.token_uri)
    outcome = run_freezeflow("ls", "gs://freezeflow-offline", cwd=tmp_path, drop=OFFLINE,
                             env={"GOOGLE_APPLICATION_CREDENTIALS": str(key)}, timeout=60)

    assert outcome.code == 1
    assert outcome.error_lines == [
        "error: listing models at gs://freezeflow-offline: 127.0.0.1 refused to exchange the credentials for a "
        "token (invalid_grant: Invalid JWT Signature.); check GOOGLE_APPLICATION_CREDENTIALS or renew them with "
        "'gcloud auth application-default login'"]


def test_a_server_that_never_answers_ends_the_command_at_its_timeout(tmp_path: Path,
                                                                      silent_server: SilentServer) -> None:
    outcome = run_freezeflow("ls", "gs://freezeflow-offline", "--timeout", "2", cwd=tmp_path, drop=OFFLINE,
                             env={"STORAGE_EMULATOR_HOST": silent_server.url}, timeout=60)

    assert outcome.code == 1
    [line] = outcome.error_lines
    assert line.startswith("error: listing models at gs://freezeflow-offline: no answer from 127.0.0.1 within 2 s")
    assert line.endswith("check the network connection to it, or allow longer with --timeout")


def test_timeout_must_be_a_positive_number_of_seconds(tmp_path: Path) -> None:
    outcome = run_freezeflow("ls", "gs://freezeflow-offline", "--timeout", "0", cwd=tmp_path, drop=OFFLINE)

    assert outcome.code != 0
    assert "--timeout" in outcome.stderr


def test_a_publish_to_a_server_that_never_answers_gives_up_at_the_patience_and_is_not_retried(
        tmp_path: Path, silent_server: SilentServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The upload stage retries only transient errors: running out of --timeout is permanent, or Prefect's
    retries would wait the whole time again, three more times."""
    import hashlib

    from tasks.core.errors import PermanentDestinationError
    from tasks.storage.base import PublishFile
    from tasks.storage.gcs import GCSDestination

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", silent_server.url)
    (tmp_path / "frozen_graph.pb").write_bytes(b"graph")
    files = [PublishFile(source=tmp_path / "frozen_graph.pb", name="frozen_graph.pb",
                         sha256=hashlib.sha256(b"graph").hexdigest(), size=5)]

    with pytest.raises(PermanentDestinationError) as failure:
        GCSDestination.from_uri("gs://freezeflow-offline/models", patience=2).publish("m", files, {})
    assert "no answer from 127.0.0.1 within 2 s" in str(failure.value)
