"""The interface every place that holds published versions implements, and what they share.

A :class:`Destination` publishes a set of files as the next version of a model, atomically for
readers: a version exists only once its ``manifest.json`` does, and the manifest is written after
every file has been copied and verified. Publishing content already published returns that version
and writes nothing. Both backends hold byte-identical layouts (see :mod:`tasks.core.layout`).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Optional

from tasks.core import layout
from tasks.core.digests import combined_digest, file_sha256
from tasks.core.errors import StaleArtifactError

if TYPE_CHECKING:  # the records (Pydantic models) load only when a version is published: `ls` needs none
    from tasks.core.records import Publication


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


def parse_manifest(data: bytes | str, where: str) -> dict[str, Any]:
    """A manifest's JSON object; anything else (not JSON, or JSON but not an object) is refused naming the file."""
    from tasks.core.errors import BrokenManifestError

    try:
        manifest = json.loads(data)
    except ValueError as exc:
        raise BrokenManifestError(f"manifest {where} is not JSON ({exc}); remove that version") from exc
    if not isinstance(manifest, dict):
        raise BrokenManifestError(
            f"manifest {where} holds a JSON {type(manifest).__name__}, not an object; remove that version")
    return manifest


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

    @abstractmethod
    def _fetch_file(self, model: str, version: int, path: str, target: Path) -> None:
        """Copy one file of a published version (``path`` as the manifest names it) to ``target``."""

    def download_version(self, model: str, version: int, target: Path) -> dict[str, Any]:
        """Copy a published version into the new folder ``target``, every file checked against the
        digest its manifest records, the manifest written last (as at the destination); returns it."""
        uri = self.version_uri(model, version)
        manifest = self.read_manifest(model, version)
        if manifest is None:
            raise StaleArtifactError(f"{uri} has no manifest; it is not (or no longer) published")
        for entry in manifest["files"]:
            relative = PurePosixPath(entry["path"])
            if relative.is_absolute() or ".." in relative.parts:  # a manifest is read, not trusted
                raise StaleArtifactError(f"{uri}/{layout.MANIFEST} names a file outside the version: {entry['path']!r}")
            file = target / relative
            file.parent.mkdir(parents=True, exist_ok=True)
            self._fetch_file(model, version, entry["path"], file)
            if file_sha256(file) != entry["sha256"]:
                raise StaleArtifactError(f"{uri}/{entry['path']} does not hold the digest its manifest records")
        (target / layout.MANIFEST).write_bytes(manifest_bytes(manifest))
        return manifest

    def models(self) -> list[str]:
        return []

    def crash_leftovers(self, older_than: float, dry_run: bool = False) -> list[tuple[str, int]]:
        """Remove (or, with ``dry_run``, only list) what publishes that died left behind more than
        ``older_than`` seconds ago: never a version with a manifest. Returns each leftover and its bytes."""
        return []

    def find_published(self, model: str, digest: str) -> Optional[int]:
        """The newest version of ``model`` whose content digest is ``digest``.

        A version with a broken manifest holds no content anyone can vouch for: it is passed over (and
        logged), so it never blocks publishing the model again.
        """
        for version in reversed(self.published_versions(model)):
            manifest = self.readable_manifest(model, version)
            if manifest and manifest.get("content_digest") == digest:
                return version
        return None

    def readable_manifest(self, model: str, version: int) -> Optional[dict[str, Any]]:
        """``read_manifest``, with a broken manifest logged and taken as no manifest."""
        from tasks.core.errors import BrokenManifestError

        try:
            return self.read_manifest(model, version)
        except BrokenManifestError as exc:
            logging.getLogger("freezeflow.destination").warning("skipping %s v%d: %s", model, version, exc)
            return None

    def publish(self, model: str, files: list[PublishFile], manifest: dict[str, Any]) -> Publication:
        """Publish ``files`` as the next version of ``model``, or return the version that already holds them."""
        layout.check_model_name(model)
        digest = content_digest(files)
        existing = self.find_published(model, digest)
        if existing is not None:
            found = self.read_manifest(model, existing) or {}
            from tasks.core.records import FileDigest, Publication

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
