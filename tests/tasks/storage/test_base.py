"""What every destination shares (tasks/storage/base.py): the manifest's bytes, the content digest, and
reading a version back with each file checked; shown on the local folder, the backend with no server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core.errors import StaleArtifactError
from tasks.storage.base import PublishFile, content_digest, manifest_bytes
from tasks.storage.local import LocalDestination
from tests.support.files import publish_files as _files


def test_manifest_bytes_are_sorted_indented_json_ending_in_a_newline() -> None:
    assert manifest_bytes({"b": 1, "a": [1, 2]}) == b'{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


def test_the_content_digest_covers_names_and_digests_not_where_the_files_were(tmp_path: Path) -> None:
    one = _files(tmp_path / "one")
    two = [PublishFile(source=tmp_path / "elsewhere", name=f.name, sha256=f.sha256, size=f.size) for f in one]
    assert content_digest(one) == content_digest(two) == content_digest(list(reversed(one)))
    assert content_digest(_files(tmp_path / "three", b"other")) != content_digest(one)


def test_download_version_copies_every_file_checked_and_the_manifest_byte_for_byte(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "dest")
    dest.publish("linear", _files(tmp_path / "src"), {})
    target = tmp_path / "copy"
    manifest = dest.download_version("linear", 1, target)
    version_dir = tmp_path / "dest" / "linear" / "1"
    published = {p.relative_to(version_dir).as_posix(): p.read_bytes() for p in version_dir.rglob("*") if p.is_file()}
    copied = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert copied == published
    assert manifest == json.loads(published["manifest.json"])


def test_download_version_refuses_a_file_that_changed_since_publishing(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "dest")
    dest.publish("linear", _files(tmp_path / "src"), {})
    (tmp_path / "dest" / "linear" / "1" / "frozen_graph.pb").write_bytes(b"tampered")
    with pytest.raises(StaleArtifactError, match=r"linear/1/frozen_graph.pb does not hold the digest its manifest"):
        dest.download_version("linear", 1, tmp_path / "copy")
    assert not (tmp_path / "copy" / "manifest.json").exists()  # no manifest: the copy never looks complete


def test_download_version_refuses_a_manifest_naming_a_file_outside_the_version(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "dest")
    dest.publish("linear", _files(tmp_path / "src"), {})
    manifest_path = tmp_path / "dest" / "linear" / "1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][0]["path"] = "../../../escape"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StaleArtifactError, match=r"names a file outside the version: '\.\./\.\./\.\./escape'"):
        dest.download_version("linear", 1, tmp_path / "copy" / "inner")
    assert not (tmp_path / "escape").exists()


def test_download_version_of_a_version_never_published_names_it(tmp_path: Path) -> None:
    dest = LocalDestination(tmp_path / "dest")
    with pytest.raises(StaleArtifactError, match=r"linear/4 has no manifest"):
        dest.download_version("linear", 4, tmp_path / "copy")
