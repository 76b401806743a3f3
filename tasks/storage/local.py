"""Published versions in a local folder: built in a hidden staging folder, then renamed into place."""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from tasks.core import layout
from tasks.core.digests import file_sha256
from tasks.core.errors import ParameterError, PermanentDestinationError, TransientDestinationError
from tasks.core.os_errors import is_transient, os_error_reason
from tasks.storage.base import Destination, PublishFile, _sha, manifest_bytes, parse_manifest

if TYPE_CHECKING:  # the records (Pydantic models) load only when a version is published: `ls` needs none
    from tasks.core.records import Publication


def _classify(exc: OSError, what: str) -> Exception:
    """The destination error for an OS error, worded by its cause (a full disk is not a permission problem)."""
    if is_transient(exc):
        return TransientDestinationError(f"{what}: {os_error_reason(exc, what)}; retrying may help")
    return PermanentDestinationError(f"{what}: {os_error_reason(exc, what)} (--dest)")


class LocalDestination(Destination):
    """A folder. A version is built in a hidden staging folder, manifest included, then renamed into place."""

    def __init__(self, root: str | Path) -> None:
        text = str(root)
        if not text.strip():
            raise ParameterError("destination is empty; pass a folder or gs://bucket/prefix")
        if ".." in Path(text).parts:
            raise ParameterError(f"destination {text!r} has a '..' segment; pass the folder it means")
        self.root = Path(text).expanduser().resolve()
        self.uri = str(self.root)
        if self.root.exists() and not self.root.is_dir():
            # Checked here, when the destination is opened (before any stage runs), not at upload.
            raise ParameterError(f"destination {text!r} is a file, not a folder; pass a folder to publish into")

    def version_uri(self, model: str, version: int) -> str:
        return str(self.root / layout.version_path(model, version))

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def published_versions(self, model: str) -> list[int]:
        folder = self.root / model
        if not folder.is_dir():
            return []
        versions = [layout.parse_version(p.name) for p in folder.iterdir()]
        return sorted(v for v in versions if v is not None and (folder / str(v) / layout.MANIFEST).is_file())

    def read_manifest(self, model: str, version: int) -> Optional[dict[str, Any]]:
        path = self.root / model / str(version) / layout.MANIFEST
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _classify(exc, f"reading manifest {path}") from exc
        return parse_manifest(data, str(path))

    def _publish_new(self, model: str, files: list[PublishFile], manifest: dict[str, Any]) -> Publication:
        model_dir = self.root / model
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _classify(exc, f"destination {self.root} cannot be written") from exc
        staging = model_dir / f".staging-{uuid.uuid4().hex}"
        try:
            staging.mkdir()
            for item in files:
                target = staging / item.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(item.source, target)
                if target.stat().st_size != item.size or file_sha256(target) != item.sha256:
                    raise TransientDestinationError(f"copy of {item.source} to {target} does not match its digest")
            data = None
            while True:
                # Claiming a number = renaming the complete folder onto it: a rename onto an existing,
                # non-empty folder fails, so two publishers can never share a version.
                version = max(self._all_numbers(model_dir), default=0) + 1
                data = manifest_bytes({**manifest, "version": version})
                (staging / layout.MANIFEST).write_bytes(data)
                try:
                    os.rename(staging, model_dir / str(version))
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, (TransientDestinationError, PermanentDestinationError)):
                raise
            raise _classify(exc, f"publishing to {model_dir}") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        from tasks.core.records import FileDigest, Publication

        return Publication(
            destination=self.uri, model_name=model, version=version, uri=self.version_uri(model, version),
            content_digest=manifest["content_digest"], manifest_sha256=_sha(data),
            files=tuple(FileDigest(path=f.name, sha256=f.sha256, size=f.size) for f in files),
        )

    def _fetch_file(self, model: str, version: int, path: str, target: Path) -> None:
        source = self.root / layout.version_path(model, version) / path
        try:
            shutil.copyfile(source, target)
        except OSError as exc:
            raise _classify(exc, f"reading {source}") from exc

    def crash_leftovers(self, older_than: float, dry_run: bool = False) -> list[tuple[str, int]]:
        """Staging folders of publishes that died (a live publish renames its folder into place when done)."""
        import time

        from tasks.core.workspace import folder_size

        if not self.root.is_dir():
            raise ParameterError(f"destination {self.root} is not a folder; pass the folder models are published to")
        cutoff = time.time() - older_than
        found: list[tuple[str, int]] = []
        for model_dir in sorted(self.root.iterdir()):
            if not model_dir.is_dir() or model_dir.name.startswith("."):
                continue
            for staging in sorted(model_dir.glob(".staging-*")):
                try:
                    if staging.stat().st_mtime >= cutoff:
                        continue
                    size = folder_size(staging)
                except FileNotFoundError:  # finished or removed meanwhile
                    continue
                found.append((str(staging), size))
                if not dry_run:
                    shutil.rmtree(staging, ignore_errors=True)
        return found

    @staticmethod
    def _all_numbers(model_dir: Path) -> list[int]:
        return [v for v in (layout.parse_version(p.name) for p in model_dir.iterdir()) if v is not None]
