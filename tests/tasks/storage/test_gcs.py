"""GCSDestination against a real fake-gcs-server: layout, idempotence, atomicity, faults, races, bad input, the flow."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from typer.testing import CliRunner

from tasks.core import layout
from tasks.storage.base import PublishFile
from tasks.storage.destinations import open_destination
from tasks.storage.local import LocalDestination
from tasks.core.errors import ParameterError, PermanentDestinationError, StaleArtifactError, TransientDestinationError
from tasks.storage.gcs import GCSDestination
from tests.gcs_support import Emulator, Fault, FaultProxy

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="the fake-gcs-server binary in the test extra is built for linux-amd64 only")

REPO = Path(__file__).resolve().parents[3]
# Short client retries (field notes): a fault test waits seconds, not the default two minutes.
FAST_RETRY = DEFAULT_RETRY.with_delay(initial=0.05, maximum=0.2).with_timeout(5)
GIVE_UP_RETRY = DEFAULT_RETRY.with_delay(initial=0.05, maximum=0.2).with_timeout(1.5)
CHUNK = 256 * 1024  # the smallest resumable chunk: a 9 MiB file goes up in many pieces
BIG = 9 << 20  # above the client's 8 MiB multipart limit, so resumable


# -- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    server = Emulator(tmp_path_factory.mktemp("gcs") / "root").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultProxy, Emulator]]:
    """An emulator reachable only through the fault proxy, resumable session URLs included."""
    proxy = FaultProxy()
    server = Emulator(tmp_path_factory.mktemp("gcs-proxied") / "root", external_url=proxy.url).start()
    proxy.forward_to(server.port)
    yield proxy, server
    proxy.close()
    server.stop()


def direct_client(server: Emulator) -> storage.Client:
    """A client straight to the emulator, for setting up and reading back, never faulted."""
    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options=ClientOptions(api_endpoint=server.url))


def new_bucket(client: storage.Client) -> storage.Bucket:
    return client.create_bucket(f"ff-{uuid.uuid4().hex[:16]}")


@pytest.fixture
def bucket(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> storage.Bucket:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    return new_bucket(direct_client(emulator))


@pytest.fixture
def faulty(proxied: tuple[FaultProxy, Emulator],
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FaultProxy, storage.Bucket]]:
    """The proxy (no faults yet) and a fresh bucket; GCSDestination's client goes through the proxy."""
    proxy, server = proxied
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    proxy.clear()
    yield proxy, new_bucket(direct_client(server))
    proxy.clear()


def write_files(folder: Path, sizes: dict[str, int], seed: str = "a") -> list[PublishFile]:
    """Small stand-ins for a SavedModel and frozen graph: content depends on name and seed only."""
    files = []
    for name, size in sizes.items():
        path = folder / seed / name
        path.parent.mkdir(parents=True, exist_ok=True)
        block = hashlib.sha256(f"{seed}/{name}".encode()).digest()
        data = (block * (size // len(block) + 1))[:size]
        path.write_bytes(data)
        files.append(PublishFile(source=path, name=name, sha256=hashlib.sha256(data).hexdigest(), size=size))
    return files


SMALL = {layout.SAVED_MODEL: 3000, "variables/variables.index": 200, "variables/variables.data-00000-of-00001": 5000,
         layout.FROZEN_GRAPH: 4000}
WITH_BIG = {**SMALL, "variables/variables.data-00000-of-00001": BIG}


def objects(bucket: storage.Bucket, prefix: str) -> dict[str, bytes]:
    return {b.name[len(prefix):]: b.download_as_bytes() for b in bucket.client.list_blobs(bucket, prefix=prefix)}


def complete_versions(bucket: storage.Bucket, base: str) -> list[int]:
    """What a reader with plain gsutil would count: version folders holding a manifest."""
    names = [b.name[len(base):] for b in bucket.client.list_blobs(bucket, prefix=base)]
    return sorted(int(n.split("/")[0]) for n in names if n.endswith("/" + layout.MANIFEST))


def assert_version_holds(bucket: storage.Bucket, base: str, version: int, files: list[PublishFile]) -> dict:
    """Exactly the files (byte for byte) plus a manifest that names them; returns the manifest."""
    found = objects(bucket, f"{base}{version}/")
    assert sorted(found) == sorted([f.name for f in files] + [layout.MANIFEST])
    for item in files:
        assert hashlib.sha256(found[item.name]).hexdigest() == item.sha256, item.name
    manifest = json.loads(found[layout.MANIFEST])
    assert manifest["version"] == version
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {f.name: f.sha256 for f in files}
    return manifest


# -- layout, idempotence, readers ----------------------------------------------------------------------------


def test_a_version_in_the_bucket_holds_the_local_layout_byte_for_byte(bucket: storage.Bucket, tmp_path: Path) -> None:
    files = write_files(tmp_path, SMALL)
    gcs = GCSDestination.from_uri(f"gs://{bucket.name}/team/models/", retry=FAST_RETRY)
    local = LocalDestination(tmp_path / "local")

    published = gcs.publish("linear", files, {"note": "first"})
    local.publish("linear", files, {"note": "first"})

    assert (published.version, published.reused) == (1, False)
    assert published.uri == f"gs://{bucket.name}/team/models/linear/1"
    manifest = assert_version_holds(bucket, "team/models/linear/", 1, files)
    local_files = {p.relative_to(local.root / "linear" / "1").as_posix(): p.read_bytes()
                   for p in (local.root / "linear" / "1").rglob("*") if p.is_file()}
    in_bucket = objects(bucket, "team/models/linear/1/")
    assert {k: v for k, v in in_bucket.items() if k != layout.MANIFEST} == \
           {k: v for k, v in local_files.items() if k != layout.MANIFEST}
    assert sorted(manifest) == sorted(json.loads(local_files[layout.MANIFEST]))
    assert gcs.published_versions("linear") == [1] and gcs.models() == ["linear"]
    assert gcs.read_manifest("linear", 1) == manifest and gcs.is_published(published)


def test_publishing_published_content_returns_its_version_and_writes_nothing(
        bucket: storage.Bucket, tmp_path: Path) -> None:
    gcs = GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=FAST_RETRY)
    first = gcs.publish("linear", write_files(tmp_path, SMALL, "a"), {})
    second = gcs.publish("linear", write_files(tmp_path, SMALL, "b"), {})
    before = {b.name: b.generation for b in bucket.client.list_blobs(bucket)}

    again = gcs.publish("linear", write_files(tmp_path, SMALL, "a"), {})

    assert (first.version, second.version) == (1, 2)
    assert (again.version, again.reused, again.content_digest) == (1, True, first.content_digest)
    assert again.manifest_sha256 == first.manifest_sha256
    assert {b.name: b.generation for b in bucket.client.list_blobs(bucket)} == before


def test_readers_never_see_a_version_without_manifest_and_its_number_is_not_reused(
        bucket: storage.Bucket, tmp_path: Path) -> None:
    gcs = GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=FAST_RETRY)
    files = write_files(tmp_path, SMALL)
    gcs.publish("linear", files, {})
    # What a publisher killed before its manifest leaves behind: a claim and some of the files.
    bucket.blob("m/linear/.claims/2").upload_from_string(b"{}")
    bucket.blob(f"m/linear/2/{layout.SAVED_MODEL}").upload_from_string(b"half")

    listing = CliRunner().invoke(_cli(), ["ls", f"gs://{bucket.name}/m"])
    one_model = CliRunner().invoke(_cli(), ["ls", f"gs://{bucket.name}/m", "linear"])
    third = gcs.publish("linear", write_files(tmp_path, SMALL, "new"), {})

    assert listing.exit_code == 0, listing.output
    assert [line.split("\t")[:2] for line in listing.output.splitlines()] == [["linear", "1"]]
    assert listing.output.splitlines()[0].endswith(f"gs://{bucket.name}/m/linear/1")
    assert one_model.output == listing.output
    assert gcs.published_versions("linear") == [1, 3] and gcs.read_manifest("linear", 2) is None
    assert third.version == 3


def test_large_files_go_up_in_resumable_chunks_with_a_progress_bar(
        faulty: tuple[FaultProxy, storage.Bucket], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proxy, bucket = faulty
    files = write_files(tmp_path, WITH_BIG)
    gcs = GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=FAST_RETRY, chunk_size=CHUNK, progress=True)

    gcs.publish("big", files, {})

    chunks = [s for s in proxy.state.seen if s[0] == "PUT" and "uploadType=resumable" in s[1]]
    assert len(chunks) == BIG // CHUNK  # every chunk its own request
    assert_version_holds(bucket, "m/big/", 1, files)
    bar = capsys.readouterr().err
    assert "upload big v1" in bar and f"{sum(f.size for f in files) / 2**20:.1f}/" in bar.splitlines()[-1]


def test_a_file_changed_since_its_record_is_not_published(bucket: storage.Bucket, tmp_path: Path) -> None:
    files = write_files(tmp_path, WITH_BIG)
    big = next(f for f in files if f.size == BIG)
    big.source.write_bytes(bytes(BIG))  # same size, other bytes: only the digest can tell
    gcs = GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=FAST_RETRY, chunk_size=CHUNK)

    with pytest.raises(StaleArtifactError, match=f"{big.source} changed since it was recorded"):
        gcs.publish("linear", files, {})

    assert gcs.published_versions("linear") == []
    assert [b.name for b in bucket.client.list_blobs(bucket, prefix="m/linear/")] == ["m/linear/.claims/1"]


def test_chunk_size_must_be_a_multiple_of_256_kib() -> None:
    with pytest.raises(ParameterError, match="multiple of 256 KiB"):
        GCSDestination("some-bucket", chunk_size=1000)


# -- faults ----------------------------------------------------------------------------------------------------


def test_bursts_of_503_are_retried_inside_one_publish(
        faulty: tuple[FaultProxy, storage.Bucket], tmp_path: Path) -> None:
    proxy, bucket = faulty
    files = write_files(tmp_path, WITH_BIG)
    for method, times in (("GET", 3), ("POST", 3), ("PUT", 4)):
        proxy.inject(Fault("status", status=503, times=times, method=method))
    proxy.inject(Fault("status", status=429, times=2))

    published = GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=FAST_RETRY, chunk_size=CHUNK).publish(
        "linear", files, {})

    assert len(proxy.outcomes("status 503")) == 10 and len(proxy.outcomes("status 429")) == 2
    assert published.version == 1 and complete_versions(bucket, "m/linear/") == [1]
    assert_version_holds(bucket, "m/linear/", 1, files)


def test_a_connection_cut_in_the_middle_of_an_upload_is_resumed(
        faulty: tuple[FaultProxy, storage.Bucket], tmp_path: Path) -> None:
    proxy, bucket = faulty
    files = write_files(tmp_path, WITH_BIG)
    proxy.inject(Fault("cut", method="PUT", after_bytes=CHUNK // 2, times=2))  # halfway through resumable chunks
    proxy.inject(Fault("cut", method="POST", path_contains="multipart", after_bytes=100))

    GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=FAST_RETRY, chunk_size=CHUNK).publish("linear", files, {})

    assert len(proxy.outcomes("cut")) == 3
    assert complete_versions(bucket, "m/linear/") == [1]
    assert_version_holds(bucket, "m/linear/", 1, files)


def test_a_lost_response_to_a_create_is_not_taken_for_a_conflict(
        faulty: tuple[FaultProxy, storage.Bucket], tmp_path: Path) -> None:
    proxy, bucket = faulty
    files = write_files(tmp_path, SMALL)
    # The claim and the manifest get written, but their answers are lost: the client's retry then gets 412.
    proxy.inject(Fault("drop_response", body_contains=b'"claim_id"'))
    proxy.inject(Fault("drop_response", body_contains=layout.MANIFEST_SCHEMA.encode()))

    published = GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=FAST_RETRY).publish("linear", files, {})

    assert len(proxy.outcomes("dropped response")) == 2 and len(proxy.outcomes("412")) >= 2
    assert published.version == 1
    assert [b.name for b in bucket.client.list_blobs(bucket, prefix="m/linear/.claims/")] == ["m/linear/.claims/1"]
    assert_version_holds(bucket, "m/linear/", 1, files)


def test_a_corrupted_upload_is_caught_before_the_manifest_and_the_rerun_publishes(
        faulty: tuple[FaultProxy, storage.Bucket], tmp_path: Path) -> None:
    proxy, bucket = faulty
    files = write_files(tmp_path, SMALL)
    flipped = files[0].source.read_bytes()[:16]  # this file's first bytes, changed on the way to the server
    proxy.inject(Fault("corrupt", body_contains=flipped, find=flipped, replace=bytes(16)))
    gcs = GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=FAST_RETRY)

    with pytest.raises(TransientDestinationError, match="differ from the local files") as failure:
        gcs.publish("linear", files, {})
    rerun = gcs.publish("linear", files, {})

    assert "\n" not in str(failure.value) and files[0].name in str(failure.value)
    assert list(bucket.client.list_blobs(bucket, prefix="m/linear/1/")) == []  # the failed attempt cleaned up
    assert rerun.version == 2 and complete_versions(bucket, "m/linear/") == [2]
    assert_version_holds(bucket, "m/linear/", 2, files)


def test_a_server_failing_longer_than_retries_gives_a_transient_error_and_leaves_nothing_visible(
        faulty: tuple[FaultProxy, storage.Bucket], tmp_path: Path) -> None:
    proxy, bucket = faulty
    files = write_files(tmp_path, WITH_BIG)
    proxy.inject(Fault("status", status=503, method="PUT", times=10_000))
    gcs = GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=GIVE_UP_RETRY, chunk_size=CHUNK)

    with pytest.raises(TransientDestinationError, match="retries ran out") as failure:
        gcs.publish("linear", files, {})
    assert "\n" not in str(failure.value) and "http" not in str(failure.value)
    assert gcs.published_versions("linear") == []
    assert [b.name for b in bucket.client.list_blobs(bucket, prefix="m/linear/")] == ["m/linear/.claims/1"]

    proxy.clear()
    rerun = gcs.publish("linear", files, {})
    assert rerun.version == 2 and complete_versions(bucket, "m/linear/") == [2]
    assert_version_holds(bucket, "m/linear/", 2, files)


def test_the_emulator_stopped_during_a_publish_and_started_again_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = FaultProxy()
    server = Emulator(tmp_path / "root", external_url=proxy.url).start()
    proxy.forward_to(server.port)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    try:
        bucket = new_bucket(direct_client(server))
        gcs = GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=GIVE_UP_RETRY, chunk_size=CHUNK)
        old_files = write_files(tmp_path, SMALL, "old")
        gcs.publish("linear", old_files, {})
        files = write_files(tmp_path, WITH_BIG, "new")
        proxy.inject(Fault("call", method="PUT", callback=server.stop))  # dies as the first chunk arrives

        with pytest.raises(TransientDestinationError):
            gcs.publish("linear", files, {})
        server.start()  # same filesystem root: what was stored survives
        rerun = gcs.publish("linear", files, {})

        bucket = direct_client(server).bucket(bucket.name)
        assert rerun.version == 3 and complete_versions(bucket, "m/linear/") == [1, 3]
        assert_version_holds(bucket, "m/linear/", 1, old_files)
        assert_version_holds(bucket, "m/linear/", 3, files)
    finally:
        proxy.close()
        server.stop()


# -- bad input -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["gs://Bad_Bucket/m", "gs://ab/m", "gs://my-google-models/m", "gs://10.0.0.1/m",
                                 "gs://bkt-ok/a/../b", "gs://bkt-ok/a//b", "gs://bkt-ok/a/*", "gs://bkt-ok/a\nb",
                                 "gs://bkt..ok/m", "gs://"])
def test_a_bad_bucket_or_prefix_is_rejected_before_any_request(
        uri: str, faulty: tuple[FaultProxy, storage.Bucket]) -> None:
    proxy, _ = faulty
    with pytest.raises(ParameterError) as failure:
        open_destination(uri)
    assert "\n" not in str(failure.value)
    assert proxy.state.seen == []


def test_cli_ls_of_a_bad_uri_exits_1_with_one_line() -> None:
    result = CliRunner().invoke(_cli(), ["ls", "gs://bkt-ok/models/../other"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: prefix of gs://bkt-ok/models/../other 'models/../other' has an empty, '.' or '..' segment; "
        "write the path it means"]


def test_a_missing_bucket_fails_at_once_with_what_to_fix(emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    gcs = GCSDestination.from_uri("gs://no-such-bucket-here/m", retry=FAST_RETRY)
    with pytest.raises(PermanentDestinationError, match="bucket no-such-bucket-here does not exist; create it"):
        gcs.publish("linear", write_files(tmp_path, SMALL), {})
    result = CliRunner().invoke(_cli(), ["ls", "gs://no-such-bucket-here/m"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "bucket no-such-bucket-here does not exist" in result.output


def test_permission_denied_fails_at_once_with_one_line_and_uploads_nothing(
        faulty: tuple[FaultProxy, storage.Bucket], tmp_path: Path) -> None:
    proxy, bucket = faulty
    proxy.inject(Fault("status", status=403, method="POST", times=100))
    with pytest.raises(PermanentDestinationError) as failure:
        GCSDestination.from_uri(f"gs://{bucket.name}/m", retry=FAST_RETRY).publish(
            "linear", write_files(tmp_path, SMALL), {})
    message = str(failure.value)
    assert "\n" not in message and "permission denied (HTTP 403" in message
    assert "roles/storage.objectAdmin" in message and bucket.name in message
    assert len(proxy.outcomes("status 403")) == 1  # not retried
    assert list(bucket.client.list_blobs(bucket)) == []


def test_without_credentials_the_error_says_how_to_get_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    result = CliRunner().invoke(_cli(), ["ls", "gs://some-bucket/m"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "no Google credentials found; run 'gcloud auth application-default login'" in result.output


# -- two publishers at once ------------------------------------------------------------------------------------

PUBLISHER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from google.cloud.storage.retry import DEFAULT_RETRY
    from tasks.storage.base import PublishFile
    from tasks.storage.gcs import GCSDestination

    uri, model, go, spec = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
    files = [PublishFile(source=Path(f["source"]), name=f["name"], sha256=f["sha256"], size=f["size"]) for f in spec]
    retry = DEFAULT_RETRY.with_delay(initial=0.05, maximum=0.2).with_timeout(10)
    destination = GCSDestination.from_uri(uri, retry=retry, chunk_size=256 * 1024)
    while not go.exists():  # both processes start publishing at the same moment
        time.sleep(0.005)
    print(json.dumps(destination.publish(model, files, {}).model_dump()))
""")


@pytest.mark.parametrize("same_content", [True, False], ids=["same-content", "different-content"])
def test_two_processes_publishing_at_once_get_distinct_complete_versions(
        same_content: bool, bucket: storage.Bucket, tmp_path: Path) -> None:
    contents = [write_files(tmp_path, WITH_BIG, "a"), write_files(tmp_path, WITH_BIG, "a" if same_content else "b")]
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    uri = f"gs://{bucket.name}/m"
    runs = [subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, uri, "linear", str(go),
         json.dumps([{"source": str(f.source), "name": f.name, "sha256": f.sha256, "size": f.size} for f in files])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO) for files in contents]
    go.touch()
    outputs = [run.communicate(timeout=90) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    versions = [json.loads(out)["version"] for out, _ in outputs]
    published = complete_versions(bucket, "m/linear/")
    if same_content:
        assert published in ([1], [1, 2]) and sorted(set(versions)) == published
    else:
        assert sorted(versions) == [1, 2] and published == [1, 2]
    for version, files in zip(versions, contents):
        assert_version_holds(bucket, "m/linear/", version, files)


# -- the real flow -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_freezeflow_run_publishes_to_gs_the_same_files_as_to_a_folder(
        prefect_api: None, bucket: storage.Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GCSDestination, "artifact_min_bytes", 0)  # a tiny model still gets its progress artifact
    uri = f"gs://{bucket.name}/models"
    cli = _cli()

    # --verbose: the default quiet mode points file descriptor 2 at a log, which CliRunner's captured
    # streams do not survive; what this test compares is the published files.
    to_gcs = CliRunner().invoke(cli, ["run", "--verbose", "--dest", uri, "--epochs", "20"])
    to_folder = CliRunner().invoke(cli, ["run", "--verbose", "--dest", str(tmp_path / "published"), "--epochs", "20"])

    assert to_gcs.exit_code == 0, to_gcs.output
    assert to_folder.exit_code == 0, to_folder.output
    assert f"published linear v1 at {uri}/linear/1" in to_gcs.output
    local = tmp_path / "published" / "linear" / "1"
    local_files = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
    in_bucket = objects(bucket, "models/linear/1/")
    assert sorted(in_bucket) == sorted(local_files)
    assert {layout.SAVED_MODEL, layout.FROZEN_GRAPH, layout.MANIFEST, "variables/variables.index"} <= set(in_bucket)
    assert all(in_bucket[name] == local_files[name] for name in local_files if name != layout.MANIFEST)
    manifest = json.loads(in_bucket[layout.MANIFEST])
    assert manifest["content_digest"] == json.loads(local_files[layout.MANIFEST])["content_digest"]
    assert manifest["parameters"]["destination"] == uri
    assert _progress_artifact(layout.artifact_key("linear", "upload")) == 100.0


def _progress_artifact(key: str) -> float:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no artifact with key {key}"
    return float(found[-1].data)


def _cli():  # imported late: the CLI module sets up the environment Prefect reads
    from freezeflow.cli.app import app

    return app
