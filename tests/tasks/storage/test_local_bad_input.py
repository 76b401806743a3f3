"""A local destination that users break: a manifest that is not an object, a --dest that is a file, a full disk,
a read-only mount. Each says what is wrong in one line, by cause, and nothing half-written stays visible."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tasks.core.errors import BrokenManifestError, ParameterError, PermanentDestinationError
from tasks.storage.base import PublishFile
from tasks.storage.destinations import open_destination
from tasks.storage.local import LocalDestination
from tests.support.filesystems import fill, mounted_tmpfs


def some_files(folder: Path, size: int = 1000) -> list[PublishFile]:
    folder.mkdir(parents=True, exist_ok=True)
    data = bytes(range(256)) * (size // 256 + 1)
    path = folder / "frozen_graph.pb"
    path.write_bytes(data[:size])
    return [PublishFile(source=path, name="frozen_graph.pb", sha256=hashlib.sha256(data[:size]).hexdigest(),
                        size=size)]


def test_a_manifest_that_is_json_but_not_an_object_is_named(tmp_path: Path) -> None:
    (tmp_path / "pub" / "m" / "1").mkdir(parents=True)
    manifest = tmp_path / "pub" / "m" / "1" / "manifest.json"
    manifest.write_text("[1, 2]")

    with pytest.raises(BrokenManifestError) as failure:
        LocalDestination(tmp_path / "pub").read_manifest("m", 1)
    assert str(failure.value) == f"manifest {manifest} holds a JSON list, not an object; remove that version"


def test_a_broken_manifest_does_not_block_publishing_that_model_again(tmp_path: Path) -> None:
    (tmp_path / "pub" / "m" / "1").mkdir(parents=True)
    (tmp_path / "pub" / "m" / "1" / "manifest.json").write_text("[1, 2]")
    destination = LocalDestination(tmp_path / "pub")

    publication = destination.publish("m", some_files(tmp_path / "src"), {})

    assert publication.version == 2
    assert json.loads((tmp_path / "pub" / "m" / "2" / "manifest.json").read_text())["version"] == 2


def test_a_dest_that_is_a_file_is_refused_when_opened(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("x")
    with pytest.raises(ParameterError, match=r"^destination '.*models' is a file, not a folder; pass a folder"):
        open_destination(str(tmp_path / "models"))


def test_a_full_disk_is_called_a_full_disk(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "disk") as disk:
        (disk / "pub").mkdir()
        fill(disk)
        destination = LocalDestination(disk / "pub")
        with pytest.raises(PermanentDestinationError) as failure:
            destination.publish("m", some_files(tmp_path / "src", size=20_000), {})
        message = str(failure.value)
        assert "the disk is full; free space on it or choose another location (--dest)" in message
        assert "permission" not in message
        assert [p.name for p in (disk / "pub" / "m").iterdir()] == []  # the staging folder is gone


def test_a_read_only_file_system_is_called_read_only(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", read_only=True) as disk:
        with pytest.raises(PermanentDestinationError) as failure:
            LocalDestination(disk / "pub").publish("m", some_files(tmp_path / "src"), {})
        assert "the file system is read-only; choose a location on a writable file system (--dest)" in \
            str(failure.value)
