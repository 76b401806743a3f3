"""Where the versions of a served model come from: a version folder, a model folder, or ``gs://``.

A :class:`ModelSource` lists the complete versions it holds (a manifest written last, or
``saved_model.pb`` in a bare TF Serving folder) with a fingerprint each, and gives each version a
local folder to load: a ``gs://`` version is downloaded into a cache first and every file checked
against the digest its manifest records.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Optional

from tasks.core import layout, workspace
from tasks.core.errors import ParameterError
from tasks.storage.base import Destination
from tasks.storage.uris import is_gs_uri, split_model_uri


class ModelSource(ABC):
    """Where the versions of one model come from."""

    name: str
    description: str

    @abstractmethod
    def complete_versions(self) -> dict[int, str]:
        """Each complete version and a fingerprint that changes when its files do."""

    @abstractmethod
    def local_path(self, version: int) -> Path:
        """A local folder holding the version's SavedModel (downloaded first when remote)."""

    @property
    def polls(self) -> bool:
        """False for a single version folder: nothing new can appear there."""
        return True


def _stat_fingerprint(folder: Path) -> str:
    parts = []
    for name in (layout.MANIFEST, layout.SAVED_MODEL, layout.VARIABLES_INDEX):
        try:
            st = (folder / name).stat()
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{name}:-")
    return "|".join(parts)


def is_complete_version(folder: Path) -> bool:
    """Published by freezeflow (its manifest is written last) or a bare SavedModel folder (saved_model.pb there)."""
    return (folder / layout.MANIFEST).is_file() or (folder / layout.SAVED_MODEL).is_file()


class LocalVersionSource(ModelSource):
    """One version folder holding saved_model.pb: that version only."""

    def __init__(self, folder: Path, name: str, version: int) -> None:
        self.folder, self.name, self.version = folder, name, version
        self.description = str(folder)

    def complete_versions(self) -> dict[int, str]:
        return {self.version: _stat_fingerprint(self.folder)} if (self.folder / layout.SAVED_MODEL).is_file() else {}

    def local_path(self, version: int) -> Path:
        return self.folder

    @property
    def polls(self) -> bool:
        return False


class LocalModelSource(ModelSource):
    """A model folder whose numeric subfolders are its versions."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self.description = str(folder)

    def complete_versions(self) -> dict[int, str]:
        found: dict[int, str] = {}
        try:
            entries = list(self.folder.iterdir())
        except FileNotFoundError:
            return found
        for entry in entries:
            version = layout.parse_version(entry.name)
            if version is not None and entry.is_dir() and is_complete_version(entry):
                found[version] = _stat_fingerprint(entry)
        return found

    def local_path(self, version: int) -> Path:
        return self.folder / str(version)


class GCSModelSource(ModelSource):
    """``gs://bucket/prefix/MODEL``: versions whose manifest exists, downloaded to a local cache before loading."""

    def __init__(self, destination_uri: str, model: str, name: str, only_version: Optional[int] = None) -> None:
        from tasks.storage.destinations import open_destination

        self.destination = open_destination(destination_uri)
        self.model, self.name, self.only_version = model, name, only_version
        self.description = self.destination.version_uri(model, only_version) if only_version else f"{destination_uri}/{model}"

    def complete_versions(self) -> dict[int, str]:
        versions = self.destination.published_versions(self.model)
        if self.only_version is not None:
            versions = [v for v in versions if v == self.only_version]
        return {v: str(v) for v in versions}  # a published version never changes: its number is its fingerprint

    def local_path(self, version: int) -> Path:
        return download_version(self.destination, self.model, version)

    @property
    def polls(self) -> bool:
        return self.only_version is None


def cache_dir(version_uri: str) -> Path:
    """Where a remote version is kept locally, one folder per version URI."""
    return workspace.home() / "serving-cache" / hashlib.sha256(version_uri.encode()).hexdigest()[:24]


def download_version(destination: Destination, model: str, version: int) -> Path:
    """Copy a published version into the local cache, checking every file against the manifest's digest."""
    uri = destination.version_uri(model, version)
    final = cache_dir(uri)
    if (final / layout.MANIFEST).is_file():
        return final
    scratch = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    try:
        # The destination's own client, layout, retries and digest checks; the manifest comes last.
        destination.download_version(model, version, scratch)
        if final.exists():
            shutil.rmtree(final)
        scratch.rename(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def check_servable_name(name: str) -> str:
    """A name given for the URL must be reachable as one path segment of ``/v1/models/NAME``.

    Looser than :func:`tasks.core.layout.check_model_name` on purpose: ``serve`` also serves folders
    that freezeflow did not publish (TF Serving's own layout), whose names may hold capitals.
    """
    if not name.strip() or name in (".", "..") or any(c in name for c in "/:") or name != name.strip():
        suggestion = "_".join(p for p in name.replace(":", "/").split("/") if p.strip(". ")) or "model"
        raise ParameterError(f"--model-name {name!r} cannot be served: no URL /v1/models/NAME reaches a name that is "
                             f"empty, '.' or '..', has '/' or ':' or surrounding spaces; use e.g. {suggestion.strip()!r}")
    return name


def open_model_source(uri: str, model_name: Optional[str] = None) -> ModelSource:
    """The source a path or URI names: a version folder, a model folder, or gs://bucket/prefix/MODEL[/VERSION]."""
    if model_name is not None:
        check_servable_name(model_name)
    if is_gs_uri(uri):
        found = split_model_uri(uri)
        if found is None:
            raise ParameterError(f"{uri}: name a model, gs://bucket/prefix/MODEL or gs://bucket/prefix/MODEL/VERSION")
        root, model, version = found
        return GCSModelSource(root, model, _servable_name(model_name or model), only_version=version)
    if "://" in uri:
        raise ParameterError(f"{uri!r}: serve a local folder or gs://bucket/prefix/MODEL")
    folder = Path(uri).expanduser().resolve()
    if not folder.is_dir():
        raise ParameterError(f"{uri}: no such folder; pass a version folder (with saved_model.pb) or a model folder")
    if (folder / layout.SAVED_MODEL).is_file():
        version = layout.parse_version(folder.name)
        default = folder.parent.name if version is not None else folder.name
        return LocalVersionSource(folder, model_name or _servable_name(default), version or 1)
    nested = sorted(p.name for p in folder.iterdir() if p.is_dir() and layout.parse_version(p.name) is None
                    and any(layout.parse_version(q.name) is not None for q in p.iterdir() if q.is_dir()))
    if nested and not any(layout.parse_version(p.name) is not None for p in folder.iterdir()):
        raise ParameterError(f"{uri} holds models ({', '.join(nested)}), not versions; pass {uri.rstrip('/')}/{nested[0]}")
    return LocalModelSource(folder, model_name or _servable_name(folder.name))


def _servable_name(name: str) -> str:
    """A model name usable in a URL path: TF Serving's routes take any name without '/' or ':'."""
    return name.replace(":", "_") or "model"
