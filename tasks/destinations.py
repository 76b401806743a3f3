"""Where published versions go, behind one small interface: a local folder here, ``gs://`` beside it.

A :class:`Destination` publishes a set of files as the next version of a model, atomically for
readers: a version exists only once its ``manifest.json`` does, and the manifest is written after
every file has been copied and verified. Publishing content already published returns that version
and writes nothing. Both backends hold byte-identical layouts (see :mod:`tasks.layout`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from tasks import layout
from tasks.digests import combined_digest, file_sha256
from tasks.errors import ParameterError, PermanentDestinationError, TransientDestinationError
from tasks.records import FileDigest, Publication


@dataclass(frozen=True)
class PublishFile:
    """One file to publish: where it is now and its path inside the version folder."""

    source: Path
    name: str
    sha256: str
    size: int


def content_digest(files: list[PublishFile]) -> str:
    return combined_digest([(f.name, f.sha256) for f in files])


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


class Destination(ABC):
    """A place that holds versions of models."""

    uri: str

    @abstractmethod
    def published_versions(self, model: str) -> list[int]:
        """Versions of ``model`` whose manifest exists, ascending."""

    @abstractmethod
    def read_manifest(self, model: str, version: int) -> Optional[dict[str, Any]]:
        """The manifest of a version, or None when the version is not (completely) published."""

    @abstractmethod
    def _publish_new(self, model: str, files: list[PublishFile], manifest: dict[str, Any]) -> Publication:
        """Write ``files`` and then ``manifest`` as a new version; leave nothing visible on failure."""

    @abstractmethod
    def version_uri(self, model: str, version: int) -> str: ...

    def models(self) -> list[str]:
        return []

    def find_published(self, model: str, digest: str) -> Optional[int]:
        """The newest version of ``model`` whose content digest is ``digest``."""
        for version in reversed(self.published_versions(model)):
            manifest = self.read_manifest(model, version)
            if manifest and manifest.get("content_digest") == digest:
                return version
        return None

    def publish(self, model: str, files: list[PublishFile], manifest: dict[str, Any]) -> Publication:
        """Publish ``files`` as the next version of ``model``, or return the version that already holds them."""
        layout.check_model_name(model)
        digest = content_digest(files)
        existing = self.find_published(model, digest)
        if existing is not None:
            found = self.read_manifest(model, existing) or {}
            return Publication(
                destination=self.uri, model_name=model, version=existing,
                uri=self.version_uri(model, existing), content_digest=digest,
                manifest_sha256=_sha(manifest_bytes(found)),
                files=tuple(FileDigest(path=f.name, sha256=f.sha256, size=f.size) for f in files), reused=True,
            )
        manifest = {**manifest, "schema": layout.MANIFEST_SCHEMA, "model": model, "content_digest": digest,
                    "files": [{"path": f.name, "sha256": f.sha256, "size": f.size} for f in files],
                    "created_at": datetime.now(timezone.utc).isoformat()}
        return self._publish_new(model, files, manifest)

    def is_published(self, publication: Publication) -> bool:
        """True while the version a publication names is still there with the same manifest."""
        found = self.read_manifest(publication.model_name, publication.version)
        return found is not None and _sha(manifest_bytes(found)) == publication.manifest_sha256


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EINTR, errno.EIO, errno.ETIMEDOUT, errno.EBUSY}


def _classify(exc: OSError, what: str) -> Exception:
    if exc.errno in _TRANSIENT_ERRNOS:
        return TransientDestinationError(f"{what}: {exc.strerror or exc}; retrying may help")
    return PermanentDestinationError(
        f"{what}: {exc.strerror or exc}; choose another destination (--dest) or fix its permissions"
    )


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
            return json.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except ValueError as exc:
            raise PermanentDestinationError(f"manifest {path} is not JSON ({exc}); remove that version") from exc

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
        return Publication(
            destination=self.uri, model_name=model, version=version, uri=self.version_uri(model, version),
            content_digest=manifest["content_digest"], manifest_sha256=_sha(data),
            files=tuple(FileDigest(path=f.name, sha256=f.sha256, size=f.size) for f in files),
        )

    @staticmethod
    def _all_numbers(model_dir: Path) -> list[int]:
        return [v for v in (layout.parse_version(p.name) for p in model_dir.iterdir()) if v is not None]


def open_destination(uri: str) -> Destination:
    """The destination a string names: ``gs://bucket/prefix`` or a local folder."""
    if uri.startswith("gs://"):
        try:
            from tasks.gcs import GCSDestination
        except ImportError as exc:
            raise ImportError(
                f"destination {uri} needs google-cloud-storage: pip install 'freezeflow[gcs]' ({exc})"
            ) from exc
        return GCSDestination.from_uri(uri)
    if "://" in uri:
        raise ParameterError(f"destination {uri!r}: only local folders and gs://bucket/prefix are supported")
    return LocalDestination(uri)
