"""The local destination: versioned, atomic for readers, idempotent, and clear about what it cannot write."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tasks.storage.destinations import open_destination
from tasks.storage.local import LocalDestination
from tasks.core.digests import file_sha256
from tasks.core.errors import ParameterError, PermanentDestinationError
from tests.support.files import publish_files as _files


def test_publish_writes_the_layout_with_the_manifest_last(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "dest")
    publication = dest.publish("linear", _files(tmp_path / "src"), {"flow_run_id": "r1"})
    version_dir = tmp_path / "dest" / "linear" / "1"
    assert publication.version == 1 and publication.uri == str(version_dir)
    assert sorted(p.relative_to(version_dir).as_posix() for p in version_dir.rglob("*") if p.is_file()) == [
        "frozen_graph.pb", "manifest.json", "saved_model.pb", "variables/variables.data-00000-of-00001",
        "variables/variables.index"]
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["flow_run_id"] == "r1"
    assert {f["path"]: f["sha256"] for f in manifest["files"]}["frozen_graph.pb"] == file_sha256(
        version_dir / "frozen_graph.pb")
    assert not [p for p in (tmp_path / "dest" / "linear").iterdir() if p.name.startswith(".")]


def test_same_content_returns_the_published_version_and_writes_nothing(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "dest")
    first = dest.publish("linear", _files(tmp_path / "src"), {})
    before = (tmp_path / "dest" / "linear" / "1" / "manifest.json").stat().st_mtime_ns
    again = dest.publish("linear", _files(tmp_path / "src"), {})
    assert again.version == first.version and again.reused
    assert dest.published_versions("linear") == [1]
    assert (tmp_path / "dest" / "linear" / "1" / "manifest.json").stat().st_mtime_ns == before
    changed = dest.publish("linear", _files(tmp_path / "src2", b"other"), {})
    assert changed.version == 2 and not changed.reused


def test_racing_publishers_get_distinct_complete_versions(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "dest")
    results: list[int] = []
    sources = [_files(tmp_path / f"src{i}", f"model-{i}".encode()) for i in range(6)]
    threads = [threading.Thread(target=lambda f=f: results.append(dest.publish("linear", f, {}).version))
               for f in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [1, 2, 3, 4, 5, 6]
    for version in results:
        manifest = dest.read_manifest("linear", version)
        graph = (tmp_path / "dest" / "linear" / str(version) / "frozen_graph.pb").read_bytes()
        assert {f["path"]: f["sha256"] for f in manifest["files"]}["frozen_graph.pb"] == file_sha256(
            tmp_path / "dest" / "linear" / str(version) / "frozen_graph.pb")
        assert graph.startswith(b"model-")


def test_failed_publish_leaves_nothing_a_reader_would_see(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "dest")
    files = _files(tmp_path / "src")
    files[-1].source.unlink()  # the last file vanishes mid-publish
    with pytest.raises(PermanentDestinationError):
        dest.publish("linear", files, {})
    assert dest.published_versions("linear") == []
    assert list((tmp_path / "dest" / "linear").iterdir()) == []


def test_reader_ignores_a_version_without_manifest(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "dest")
    dest.publish("linear", _files(tmp_path / "src"), {})
    (tmp_path / "dest" / "linear" / "2").mkdir()  # e.g. someone's half-copied folder
    assert dest.published_versions("linear") == [1]
    assert dest.publish("linear", _files(tmp_path / "src2", b"x"), {}).version == 3


def test_destination_that_cannot_be_written_fails_at_once(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PermanentDestinationError, match=r"destination .*a-file/dest cannot be written.*--dest"):
        LocalDestination(blocker / "dest").publish("linear", _files(tmp_path / "src"), {})


@pytest.mark.parametrize(
    ("uri", "message"),
    [("", "destination is empty"), ("a/../b", "has a '..' segment"), ("s3://bucket/x", "only local folders")],
)
def test_bad_destination_is_refused(uri: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        open_destination(uri)


def test_bad_model_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="model_name 'Bad/Name' must be"):
        LocalDestination(tmp_path).publish("Bad/Name", _files(tmp_path / "src"), {})

