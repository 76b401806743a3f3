"""The workspace as a store of artifacts: a local folder, or ``gs://bucket/prefix`` shared by every machine.

:mod:`tasks.core.workspace` decides names and local paths; this module moves bytes. In a ``gs://``
workspace a stage's output lives at ``artifacts/DIGEST/FILE`` (content-addressed: two machines that
compute the same stage never mix their files), each object carrying its SHA-256 and CRC32C in custom
metadata. GCS makes an object visible only once its upload is complete and its CRC32C checked, and the
stage's cache record is written (by Prefect, after the task returns) only once every object is up, so
nothing half-written is ever taken for whole: a worker killed mid-upload leaves no record, and the next
run redoes that stage.

Three things a run asks of it:

* :func:`materialise`: a local path for an input artifact (local workspace: the folder itself; remote:
  its copy in the scratch cache, fetched by digest and verified on the way in);
* :meth:`WorkspaceStore.keep`: a stage's new outputs made durable before the stage reports Completed;
* :meth:`WorkspaceStore.check_record`: whether a cached record's artifacts are still whole, from object
  metadata only (size, SHA-256 and CRC32C), never reading their bytes.
"""

from __future__ import annotations

import base64
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import BaseModel

from tasks.core import workspace
from tasks.core.digests import file_sha256
from tasks.core.errors import ParameterError, PermanentDestinationError, StaleArtifactError
from tasks.core.records import Artifact

logger = logging.getLogger("freezeflow.workspace")

SHA256_METADATA = "freezeflow-sha256"
CRC32C_METADATA = "freezeflow-crc32c"
CHECK_SECONDS = 20.0  # the reachability check gives up after this: one line within 30 s, before any stage


def artifacts_in(value: Any) -> Iterator[Artifact]:
    """Every artifact inside a record (or a list, tuple or dict of them)."""
    if isinstance(value, Artifact):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from artifacts_in(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from artifacts_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from artifacts_in(item)


class WorkspaceStore:
    """A local workspace: artifacts are folders under it, read and checked in place."""

    uri: str
    result_storage: Any = None  # Prefect's result storage in this workspace, set by tasks.stages.workspace

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._usable = False  # checked once per process: the CLI checks before Prefect starts, the flow again

    def check(self) -> None:
        """Fail with one line naming the workspace when it cannot be used (once a store passed, it is not
        asked again in this process)."""
        if not self._usable:
            self._check()
            self._usable = True

    # One store per workspace per process: a copy (Prefect deep-copies cache policies) is the same store.
    def __deepcopy__(self, memo: dict) -> "WorkspaceStore":
        return self

    def __reduce__(self) -> Any:
        return open_store, (self.uri,)

    def materialise_all(self, value: Any) -> None:
        """Make every artifact inside ``value`` (a stage's inputs) local."""
        for artifact in artifacts_in(value):
            self.materialise(artifact)

    def _check(self) -> None:
        """A local workspace can be created and written: a probe file is written and removed."""
        root = Path(self.uri)
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".probe-{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise PermanentDestinationError(
                f"workspace {self.uri} cannot be written ({exc.strerror or exc}); fix its permissions or point "
                "FREEZEFLOW_WORKSPACE (--workspace) elsewhere") from exc

    def materialise(self, artifact: Artifact) -> Path:
        return artifact.path()

    def keep(self, value: Any) -> None:
        """Nothing to do: a local stage output was moved into place whole by ``workspace.building``."""

    def check_record(self, value: Any) -> None:
        """Raise :class:`StaleArtifactError` unless every artifact still holds its digests (files re-read)."""
        for artifact in artifacts_in(value):
            artifact.verify()

    def delete_key(self, key: str) -> None:
        (workspace.keys_dir() / key).unlink(missing_ok=True)

    def read_cache_object(self, folder: str, name: str) -> Optional[bytes]:
        """The bytes Prefect stored as ``cache-keys/NAME`` or ``results/NAME``; None when there are none."""
        where = {"cache-keys": workspace.keys_dir, "results": workspace.results_dir}[folder]()
        try:
            return (where / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None


class GCSWorkspaceStore(WorkspaceStore):
    """A ``gs://bucket/prefix`` workspace, through the publisher's client, retries and error wording."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        from tasks.storage.gcs import GCSDestination

        self.gcs = GCSDestination.from_uri(uri)

    def _options(self, at_most: Optional[float] = None) -> dict[str, Any]:
        """Retry and timeout for one call: each call of this long-lived store gets the whole patience."""
        self.gcs._clock.answered()
        return self.gcs._call_options(at_most)

    def object_name(self, key: str, path: str = "") -> str:
        return self.gcs._key(*(part for part in (key, path) if part))

    def _check(self) -> None:
        """The bucket answers and lets this machine list and write: one listing and a probe object written
        and removed, within 30 s."""
        from google.api_core import exceptions as api_exceptions

        what = f"workspace {self.uri}"
        bucket = self.gcs.bucket
        try:
            list(self.gcs.client.list_blobs(bucket, prefix=self.object_name("cache-keys/"), max_results=1,
                                            **self._options(CHECK_SECONDS)))
            # A read-only account would pass the listing and fail at the first stage's upload: write (and
            # remove) an empty object, so that it fails here, before any stage.
            probe = bucket.blob(self.object_name(".probes", uuid.uuid4().hex))
            probe.upload_from_string(b"", **self._options(CHECK_SECONDS))
            probe.delete(**self._options(CHECK_SECONDS))
        except api_exceptions.NotFound as exc:
            raise PermanentDestinationError(
                f"{what}: bucket {self.gcs.bucket_name} does not exist; create it or point FREEZEFLOW_WORKSPACE "
                "(--workspace) at an existing bucket") from exc
        except Exception as exc:
            raise self._error(exc, what) from exc

    def _error(self, exc: BaseException, what: str) -> BaseException:
        """The publisher's wording; a check that ran out of its time is permanent and says how long it waited."""
        from google.api_core import exceptions as api_exceptions

        from tasks.storage.gcs_errors import classify

        waited = min(self.gcs.patience, CHECK_SECONDS) if isinstance(exc, api_exceptions.RetryError) else None
        return classify(exc, what, self.gcs.bucket_name, host=self.gcs._host(), out_of_time=waited)

    # -- reading ---------------------------------------------------------------------------------------

    def materialise(self, artifact: Artifact) -> Path:
        """The artifact's copy in the scratch cache, fetched by digest and verified when missing."""
        if artifact.source is not None:
            return Path(artifact.source)
        cached = workspace.cache_dir() / artifact.digest
        if cached.is_dir():
            workspace.touch(cached)
            return cached
        scratch = workspace.cache_dir() / f".fetch-{artifact.digest[:16]}-{uuid.uuid4().hex[:8]}"
        scratch.mkdir(parents=True)
        try:
            for entry in artifact.files:
                target = scratch / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                name = self.object_name(artifact.key or "", entry.path)
                try:
                    self.gcs.bucket.blob(name).download_to_filename(str(target), **self._options())
                except Exception as exc:
                    from google.api_core import exceptions as api_exceptions

                    if isinstance(exc, api_exceptions.NotFound):
                        raise StaleArtifactError(f"{self.uri}/{artifact.key}/{entry.path} is gone") from exc
                    raise self.gcs._error(exc, f"fetching {self.uri}/{artifact.key}/{entry.path}") from exc
                if target.stat().st_size != entry.size or file_sha256(target) != entry.sha256:
                    raise StaleArtifactError(
                        f"{self.uri}/{artifact.key}/{entry.path} does not hold the bytes its record names "
                        "(digest differs); it is not used")
            try:
                scratch.rename(cached)
            except OSError:  # another stage fetched the same artifact meanwhile
                if not cached.is_dir():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        workspace.evict(keep=(artifact.digest,))
        return cached

    def _objects(self, key: str) -> dict[str, Any]:
        prefix = self.object_name(key) + "/"
        try:
            blobs = list(self.gcs.client.list_blobs(self.gcs.bucket, prefix=prefix, **self._options()))
        except Exception as exc:
            raise self.gcs._error(exc, f"listing {self.uri}/{key}") from exc
        return {blob.name[len(prefix):]: blob for blob in blobs}

    def check_record(self, value: Any) -> None:
        """Every artifact's objects are there with the size, SHA-256 and CRC32C its record names: one listing
        per artifact, no bytes read. An object whose bytes were replaced has a CRC32C (computed by GCS) that no
        longer matches the one written beside its digest."""
        for artifact in artifacts_in(value):
            if artifact.source is not None:
                artifact.verify()
                continue
            objects = self._objects(artifact.key or "")
            for entry in artifact.files:
                blob = objects.get(entry.path)
                where = f"{self.uri}/{artifact.key}/{entry.path}"
                if blob is None:
                    raise StaleArtifactError(f"{where} is gone; the record that names it is stale")
                metadata = blob.metadata or {}
                if blob.size != entry.size or metadata.get(SHA256_METADATA) != entry.sha256 or \
                        metadata.get(CRC32C_METADATA) != blob.crc32c:
                    raise StaleArtifactError(f"{where} changed since it was recorded (size or checksum differs)")

    # -- writing ---------------------------------------------------------------------------------------

    def keep(self, value: Any) -> None:
        """Upload every artifact of a stage's result that is not in the workspace yet; each object is
        checked by the client against its CRC32C, and carries its SHA-256 and CRC32C as metadata."""
        for artifact in artifacts_in(value):
            if artifact.source is not None or artifact.key is None:
                continue
            local = artifact.path()
            present = self._objects(artifact.key)
            for entry in artifact.files:
                blob = present.get(entry.path)
                if blob is not None and (blob.metadata or {}).get(SHA256_METADATA) == entry.sha256 and \
                        blob.size == entry.size and (blob.metadata or {}).get(CRC32C_METADATA) == blob.crc32c:
                    continue  # stored once: the same content is already there
                self._upload(local / entry.path, self.object_name(artifact.key, entry.path), entry.sha256,
                             f"{self.uri}/{artifact.key}/{entry.path}")

    def _upload(self, source: Path, name: str, sha256: str, where: str) -> None:
        import google_crc32c

        checksum = google_crc32c.Checksum()
        with open(source, "rb") as handle:
            while chunk := handle.read(1 << 20):
                checksum.update(chunk)
        crc32c = base64.b64encode(checksum.digest()).decode()
        large = source.stat().st_size > 8 << 20  # smaller files go in one request; larger ones resumably
        blob = self.gcs.bucket.blob(name, chunk_size=self.gcs.chunk_size if large else None)
        blob.metadata = {SHA256_METADATA: sha256, CRC32C_METADATA: crc32c}
        blob.crc32c = crc32c
        try:
            blob.upload_from_filename(str(source), checksum="crc32c", **self._options())
        except Exception as exc:
            raise self.gcs._error(exc, f"uploading {where}") from exc

    def read_cache_object(self, folder: str, name: str) -> Optional[bytes]:
        from google.api_core import exceptions as api_exceptions

        try:
            return self.gcs.bucket.blob(self.object_name(folder, name)).download_as_bytes(**self._options())
        except api_exceptions.NotFound:
            return None
        except Exception as exc:
            raise self.gcs._error(exc, f"reading {self.uri}/{folder}/{name}") from exc

    def delete_key(self, key: str) -> None:
        try:
            self.gcs.bucket.blob(self.object_name("cache-keys", key)).delete(**self._options())
        except Exception as exc:
            from google.api_core import exceptions as api_exceptions

            if not isinstance(exc, api_exceptions.NotFound):
                raise self.gcs._error(exc, f"deleting the stale cache record {key} in {self.uri}") from exc


_STORES: dict[str, WorkspaceStore] = {}


def open_store(uri: Optional[str] = None) -> WorkspaceStore:
    """The store of workspace ``uri`` (default: the workspace in use), one per URI per process."""
    uri = workspace.normalise(uri) if uri else workspace.uri()
    store = _STORES.get(uri)
    if store is None:
        if uri.startswith("gs://"):
            store = GCSWorkspaceStore(uri)
        elif workspace.is_remote(uri):
            raise ParameterError(f"workspace {uri}: only local folders and gs://bucket/prefix are supported")
        else:
            store = WorkspaceStore(uri)
        _STORES[uri] = store
    return store


def materialise(artifact: Artifact) -> Path:
    """The one way a stage gets a local path for an input: the folder itself in a local workspace; in a
    remote one, its copy in this machine's scratch cache (fetched by digest, verified on the way in)."""
    return open_store().materialise(artifact)
