"""Versions of models in Google Cloud Storage: claimed, uploaded, verified, then made visible by a manifest.

    gs://BUCKET/PREFIX/MODEL/VERSION/...        the same files as a local version (see tasks.core.layout)
    gs://BUCKET/PREFIX/MODEL/.claims/VERSION    a marker created with ifGenerationMatch=0: who owns a number

A reader counts a version only once its ``manifest.json`` exists. A failed publish deletes what it
uploaded (best effort) and keeps its claim, so a number is never handed out twice; a version left
behind by a crash has no manifest and stays invisible.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import google_crc32c
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from tasks.core import layout
from tasks.storage.base import Destination, PublishFile, manifest_bytes, parse_manifest
from tasks.core.errors import ParameterError, PermanentDestinationError, StaleArtifactError, TransientDestinationError
from tasks.storage.gcs_errors import classify, reason, retryable
from tasks.storage.gcs_progress import UploadCancelled, UploadProgress, UploadReader
from tasks.storage.uris import is_gs_uri, split_gs_uri

if TYPE_CHECKING:  # the records (Pydantic models) load only when a version is published: `ls` needs none
    from tasks.core.records import Publication

logger = logging.getLogger("freezeflow.gcs")

CLAIMS = ".claims"
DIGEST_METADATA = "freezeflow-content-digest"  # on manifest.json: lets find_published skip manifests by listing
_MIB = 1 << 20
_CHUNK_QUANTUM = 256 * 1024  # resumable chunks must be multiples of this
_CLAIM_ATTEMPTS = 100

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_.-]*[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
# Control characters are refused by GCS; '#', '[', ']', '*', '?' break gsutil/gcloud wildcards and URLs.
_BAD_OBJECT_CHARS = re.compile(r"[\x00-\x1f\x7f#\[\]*?]")


def check_bucket_name(name: str) -> str:
    """The bucket naming rules GCS applies, checked before any request is sent."""
    problem = None
    if not _BUCKET.match(name) or len(name) < 3:
        problem = ("must be 3 or more lowercase letters, digits, '-', '_' or '.', starting and ending with a letter "
                   "or digit")
    elif len(name) > (222 if "." in name else 63):
        problem = "is too long (63 characters, or 222 with dots)"
    elif any(not part or len(part) > 63 for part in name.split(".")):
        problem = "has an empty or longer than 63 characters dot-separated part"
    elif _IPV4.match(name):
        problem = "must not look like an IP address"
    elif name.startswith("goog") or "google" in name:
        problem = "must not start with 'goog' or contain 'google'"
    if problem:
        raise ParameterError(f"bucket name {name!r} {problem} (https://cloud.google.com/storage/docs/buckets#naming)")
    return name


def check_object_path(path: str, what: str) -> str:
    """A '/'-separated object name part: no empty, '.' or '..' segment, nothing GCS or its tools refuse."""
    if _BAD_OBJECT_CHARS.search(path):
        raise ParameterError(f"{what} {path!r} holds a control character or one of # [ ] * ?; rename it")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise ParameterError(f"{what} {path!r} has an empty, '.' or '..' segment; write the path it means")
    if len(path.encode()) > 512:  # leaves room for MODEL/VERSION/variables/... under GCS's 1024-byte limit
        raise ParameterError(f"{what} {path!r} is longer than 512 bytes; shorten it")
    return path


class GCSDestination(Destination):
    """``gs://BUCKET/PREFIX``: versions as objects, credentials from Application Default Credentials."""

    chunk_size: int = 64 * _MIB  # fewer, larger requests; a failed chunk re-sends at most this much
    max_workers: int = 8  # requests' connection pool holds 10 connections per host
    artifact_min_bytes: int = 64 * _MIB  # smaller uploads finish before a progress artifact would help
    timeout: tuple[float, float] = (10.0, 120.0)  # (connect, read) seconds per request
    patience: float = 60.0  # seconds remote calls may go without an answer, retries included (--timeout)

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Optional[storage.Client] = None,
        retry: Optional[Retry] = None,
        chunk_size: Optional[int] = None,
        max_workers: Optional[int] = None,
        progress: Optional[bool] = None,
        artifact_min_bytes: Optional[int] = None,
        patience: Optional[float] = None,
    ) -> None:
        self.bucket_name = check_bucket_name(bucket)
        self.prefix = check_object_path(prefix.strip("/"), "prefix") if prefix.strip("/") else ""
        self.uri = f"gs://{self.bucket_name}/{self.prefix}" if self.prefix else f"gs://{self.bucket_name}"
        # The client's own retry (408, 429, 5xx, connection errors) with exponential backoff and jitter;
        # tests inject a short one.
        self.retry = retry if retry is not None else DEFAULT_RETRY
        self.patience = patience if patience is not None else remote_timeout()
        self._clock = _Patience(self.patience)
        self._bounded = threading.local()  # whether this thread's last call was bounded by the patience
        self.chunk_size = chunk_size or self.chunk_size
        if self.chunk_size % _CHUNK_QUANTUM:
            raise ParameterError(f"chunk_size {self.chunk_size} must be a multiple of 256 KiB ({_CHUNK_QUANTUM})")
        self.max_workers = max_workers or self.max_workers
        self.progress = progress  # None: a bar only when stderr is a terminal
        if artifact_min_bytes is not None:
            self.artifact_min_bytes = artifact_min_bytes
        self._client = client

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> "GCSDestination":
        """``gs://bucket[/prefix]``, checked before anything is sent; ``options`` go to the constructor."""
        if not is_gs_uri(uri):
            raise ParameterError(f"destination {uri!r} is not a gs://bucket/prefix URI")
        gs = split_gs_uri(uri)
        if gs.path:
            check_object_path(gs.path, f"prefix of {uri}")
        return cls(gs.bucket, gs.path, **options)

    @property
    def client(self) -> storage.Client:
        # Built on first use, so that parsing a URI needs no credentials; STORAGE_EMULATOR_HOST is honoured
        # by the client itself (anonymous credentials when none are configured).
        if self._client is None:
            try:
                self._client = storage.Client()
            except Exception as exc:
                raise self._error(exc, f"connecting to {self.uri}") from exc
        return self._client

    @property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(self.bucket_name)

    def _key(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts] if self.prefix else parts)

    def version_uri(self, model: str, version: int) -> str:
        return f"{self.uri}/{layout.version_path(model, version)}"

    # -- readers -------------------------------------------------------------------------------------------

    def models(self) -> list[str]:
        top = self._key("") if self.prefix else ""
        _, prefixes = self._list(top, delimiter="/", what=f"listing models at {self.uri}")
        names = (p[len(top):].rstrip("/") for p in prefixes)
        return sorted(n for n in names if n and not n.startswith("."))

    def published_versions(self, model: str) -> list[int]:
        return sorted(self._manifests(model))

    def read_manifest(self, model: str, version: int) -> Optional[dict[str, Any]]:
        name = self._key(model, str(version), layout.MANIFEST)
        data = self._download(name, f"reading {self.uri}/{model}/{version}/{layout.MANIFEST}")
        if data is None:
            return None
        return parse_manifest(data, f"gs://{self.bucket_name}/{name}")

    def find_published(self, model: str, digest: str) -> Optional[int]:
        """One listing finds the candidates: each manifest carries its content digest as object metadata."""
        manifests = self._manifests(model)
        for version in sorted(manifests, reverse=True):
            hint = (manifests[version].metadata or {}).get(DIGEST_METADATA)
            if hint is not None and hint != digest:
                continue
            manifest = self.readable_manifest(model, version)  # the manifest, not the hint, decides
            if manifest and manifest.get("content_digest") == digest:
                return version
        return None

    def _manifests(self, model: str) -> dict[int, storage.Blob]:
        """The manifest object of every complete version of ``model``."""
        base = self._key(layout.check_model_name(model), "")
        # matchGlob lists only manifests on GCS; fake-gcs-server ignores it, so names are filtered here as well.
        blobs, _ = self._list(base, match_glob=f"{base}*/{layout.MANIFEST}", what=f"listing {self.uri}/{model}")
        found: dict[int, storage.Blob] = {}
        for blob in blobs:
            folder, _, rest = blob.name[len(base):].partition("/")
            version = layout.parse_version(folder)
            if version is not None and rest == layout.MANIFEST:
                found[version] = blob
        return found

    # -- publishing ----------------------------------------------------------------------------------------

    def _publish_new(self, model: str, files: list[PublishFile], manifest: dict[str, Any]) -> Publication:
        for item in files:
            check_object_path(item.name, "file name")
            if item.name == layout.MANIFEST:
                raise ParameterError(f"file name {item.name!r} is reserved for the manifest")
        digest = manifest["content_digest"]
        try:
            version = self._claim(model, digest)
        except Exception as exc:
            raise self._error(exc, f"claiming a version of {model} at {self.uri}") from exc
        data = manifest_bytes({**manifest, "version": version})
        manifest_tried = False
        try:
            crcs = self._upload_files(model, version, files)
            self._verify(model, version, files, crcs)
            manifest_tried = True
            self._write_manifest(model, version, data, digest)
        except BaseException as exc:
            self._remove_unfinished(model, version, data if manifest_tried else None)
            error = self._error(exc, f"publishing {self.version_uri(model, version)}")
            if error is exc:
                raise
            raise error from exc
        logger.info("published %s (%d files, %.1f MiB)", self.version_uri(model, version), len(files),
                    sum(f.size for f in files) / _MIB)
        from tasks.core.records import FileDigest, Publication

        return Publication(
            destination=self.uri, model_name=model, version=version, uri=self.version_uri(model, version),
            content_digest=digest, manifest_sha256=hashlib.sha256(data).hexdigest(),
            files=tuple(FileDigest(path=f.name, sha256=f.sha256, size=f.size) for f in files),
        )

    def _claim(self, model: str, digest: str) -> int:
        """Own the next free number by creating its marker; a taken number moves on to the next."""
        claim = json.dumps({"claim_id": uuid.uuid4().hex, "content_digest": digest, "host": socket.gethostname(),
                            "pid": os.getpid(), "claimed_at": datetime.now(timezone.utc).isoformat()},
                           sort_keys=True).encode()
        base = self._key(model, "")
        _, folders = self._list(base, delimiter="/", what=f"listing {self.uri}/{model}")
        claims, _ = self._list(base + CLAIMS + "/", what=f"listing claims of {self.uri}/{model}")
        taken = [layout.parse_version(p[len(base):].rstrip("/")) for p in folders]
        taken += [layout.parse_version(b.name.rsplit("/", 1)[-1]) for b in claims]
        version = max((v for v in taken if v is not None), default=0) + 1
        for _ in range(_CLAIM_ATTEMPTS):
            blob = self.bucket.blob(f"{base}{CLAIMS}/{version}")
            try:
                # A small object goes up as one multipart request: the kind whose precondition the emulator
                # enforces too (it ignores it on resumable uploads; field notes).
                blob.upload_from_string(claim, content_type="application/json", if_generation_match=0,
                                        **self._call_options())
                self._clock.answered()
                return version
            except api_exceptions.PreconditionFailed:
                self._clock.answered()
                # A create retried after its response was lost gets 412 although it succeeded.
                if self._download(blob.name, f"reading claim {version} of {model}") == claim:
                    return version
            version += 1
        raise TransientDestinationError(f"could not claim a version of {model} at {self.uri} in {_CLAIM_ATTEMPTS} "
                                        "tries; too many publishers at once, retry")

    def _upload_files(self, model: str, version: int, files: list[PublishFile]) -> list[str]:
        """Upload every file, several at once; returns their CRC32Cs, computed from the bytes sent."""
        progress = UploadProgress(
            sum(f.size for f in files), f"upload {model} v{version}", show_bar=self.progress,
            artifact_key=layout.artifact_key(model, "upload"), artifact_min_bytes=self.artifact_min_bytes)
        cancelled = threading.Event()
        order = sorted(range(len(files)), key=lambda i: -files[i].size)  # the largest file starts first
        pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="gcs-upload")
        futures: dict[int, Future[str]] = {
            i: pool.submit(self._upload_one, self._key(model, str(version), files[i].name), files[i], i, progress,
                           cancelled) for i in order}
        first_error: Optional[BaseException] = None
        pending = set(futures.values())
        try:
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
                for future in done:
                    exc = None if future.cancelled() else future.exception()
                    if exc is not None and first_error is None and not isinstance(exc, UploadCancelled):
                        first_error = exc
                        cancelled.set()  # the other workers stop at their next read
                        for other in pending:
                            other.cancel()
                progress.render()
        except BaseException:
            cancelled.set()  # interrupted: stop the workers before anyone cleans up behind them
            for future in futures.values():
                future.cancel()
            progress.close(completed=False)
            raise
        finally:
            pool.shutdown(wait=True)
        progress.close(completed=first_error is None)
        if first_error is not None:
            raise first_error
        return [futures[i].result() for i in range(len(files))]

    def _upload_one(self, name: str, item: PublishFile, index: int, progress: UploadProgress,
                    cancelled: threading.Event) -> str:
        """Upload one file; its SHA-256 must still be the recorded one. Returns the CRC32C of what was sent."""
        # Above 8 MiB the client switches to a resumable upload sent in chunk_size pieces; a failed piece is
        # resumed, not re-sent from the start.
        blob = self.bucket.blob(name, chunk_size=self.chunk_size)
        try:
            handle = open(item.source, "rb")
        except FileNotFoundError as exc:
            raise StaleArtifactError(f"{item.source} is gone; run the stage that writes it again") from exc
        with handle:
            reader = _AnsweringReader(handle, index, progress, cancelled, self._clock)
            try:
                blob.upload_from_file(reader, size=item.size, content_type="application/octet-stream",
                                      if_generation_match=0, checksum="crc32c", **self._call_options())
            except api_exceptions.PreconditionFailed:
                pass  # a create retried after its response was lost; _verify compares what is there
        # Checksums of the bytes as they were read for sending: one pass over a large file, not two.
        sha256, crc32c = reader.checksums(item.size) or _file_checksums(item)
        if sha256 != item.sha256:
            raise StaleArtifactError(f"{item.source} changed since it was recorded (digest differs); run the stage "
                                     "that writes it again")
        return crc32c

    def _verify(self, model: str, version: int, files: list[PublishFile], crcs: list[str]) -> None:
        """Every object's size and CRC32C against the local file, from one listing, before the manifest."""
        base = self._key(model, str(version), "")
        blobs, _ = self._list(base, what=f"verifying {self.version_uri(model, version)}")
        found = {b.name[len(base):]: b for b in blobs}
        problems = []
        for item, crc in zip(files, crcs):
            blob = found.pop(item.name, None)
            if blob is None:
                problems.append(f"{item.name} is missing")
            elif blob.size != item.size or blob.crc32c != crc:
                problems.append(f"{item.name} holds {blob.size} bytes with CRC32C {blob.crc32c}, "
                                f"the local file {item.size} bytes with {crc}")
        if found:
            problems.append(f"unexpected objects {sorted(found)}")
        if problems:
            raise TransientDestinationError(
                f"uploaded objects at {self.version_uri(model, version)} differ from the local files "
                f"({'; '.join(problems)}); publishing again uploads them again")

    def _write_manifest(self, model: str, version: int, data: bytes, digest: str) -> None:
        blob = self.bucket.blob(self._key(model, str(version), layout.MANIFEST))
        blob.metadata = {DIGEST_METADATA: digest}
        try:
            blob.upload_from_string(data, content_type="application/json", if_generation_match=0,
                                    **self._call_options())
            self._clock.answered()
        except api_exceptions.PreconditionFailed:
            if self._download(blob.name, f"reading back {self.version_uri(model, version)}/{layout.MANIFEST}") != data:
                raise PermanentDestinationError(
                    f"{self.version_uri(model, version)} got a manifest from another writer although this publish "
                    f"claimed it; something writes to {self.uri} without claiming versions") from None

    def _remove_unfinished(self, model: str, version: int, manifest: Optional[bytes]) -> None:
        """Best effort: take back what a failed publish uploaded. The claim stays, so the number is not reused."""
        base = self._key(model, str(version), "")
        uri = self.version_uri(model, version)
        if self._clock.remaining() <= 0:
            logger.warning("left the unfinished version %s in place: no time left (--timeout); readers ignore it: "
                           "it has no manifest", uri)
            return
        options = self._call_options(at_most=30.0)
        try:
            if manifest is not None:
                blob = self.bucket.get_blob(base + layout.MANIFEST, **options)
                if blob is not None:
                    if blob.download_as_bytes(**options) != manifest:
                        return  # another writer's version: not ours to remove
                    # The manifest goes first: a reader must never see a manifest whose files are going away.
                    blob.delete(if_generation_match=blob.generation, **options)
            for blob in self.client.list_blobs(self.bucket_name, prefix=base, **options):
                try:
                    blob.delete(**options)
                except api_exceptions.NotFound:
                    pass
        except Exception as exc:
            logger.warning("could not remove the unfinished version %s (%s); readers ignore it: it has no manifest",
                           uri, reason(exc))

    def crash_leftovers(self, older_than: float, dry_run: bool = False) -> list[tuple[str, int]]:
        """The files of claimed versions that never got their manifest, claimed more than ``older_than``
        seconds ago. The claim itself stays, so the number is never handed out again."""
        cutoff = datetime.now(timezone.utc).timestamp() - older_than
        found: list[tuple[str, int]] = []
        for model in self.models():
            base = self._key(model, "")
            claims, _ = self._list(base + CLAIMS + "/", what=f"listing claims of {self.uri}/{model}")
            complete = self._manifests(model)
            for claim in claims:
                version = layout.parse_version(claim.name.rsplit("/", 1)[-1])
                if version is None or version in complete or claim.updated is None \
                        or claim.updated.timestamp() >= cutoff:
                    continue
                blobs, _ = self._list(f"{base}{version}/", what=f"listing {self.version_uri(model, version)}")
                if not blobs:
                    continue
                found.append((self.version_uri(model, version), sum(b.size or 0 for b in blobs)))
                if dry_run:
                    continue
                for blob in blobs:
                    try:
                        blob.delete(**self._call_options())
                    except api_exceptions.NotFound:
                        pass
                    except Exception as exc:
                        raise self._error(exc, f"removing {self.version_uri(model, version)}") from exc
        return found

    # -- requests and their errors -------------------------------------------------------------------------

    def _list(self, prefix: str, *, what: str, delimiter: Optional[str] = None,
              match_glob: Optional[str] = None) -> tuple[list[storage.Blob], set[str]]:
        try:
            pages = self.client.list_blobs(self.bucket_name, prefix=prefix or None, delimiter=delimiter,
                                           match_glob=match_glob, **self._call_options())
            blobs = list(pages)
            self._clock.answered()
            return blobs, set(pages.prefixes)
        except Exception as exc:
            raise self._error(exc, what, missing_bucket=True) from exc

    def _download(self, name: str, what: str) -> Optional[bytes]:
        """An object's bytes, or None when it does not exist."""
        try:
            data = self.bucket.blob(name).download_as_bytes(**self._call_options())
        except api_exceptions.NotFound:
            self._clock.answered()
            return None
        except Exception as exc:
            raise self._error(exc, what) from exc
        self._clock.answered()
        return data

    def _fetch_file(self, model: str, version: int, path: str, target: Path) -> None:
        name = self._key(layout.version_path(model, version), path)
        try:
            self.bucket.blob(name).download_to_filename(str(target), **self._call_options())
        except Exception as exc:
            raise self._error(exc, f"downloading {self.version_uri(model, version)}/{path}") from exc
        self._clock.answered()

    def _error(self, exc: BaseException, what: str, missing_bucket: bool = False) -> BaseException:
        # Out of time: the retries of a call that the patience bounded gave up, or nothing is left of it.
        bounded = getattr(self._bounded, "value", False)
        out_of_time = self.patience if (bounded and isinstance(exc, api_exceptions.RetryError)) or \
            self._clock.remaining() <= 0 else None
        return classify(exc, what, self.bucket_name, missing_bucket, host=self._host(), out_of_time=out_of_time,
                        token_server=self._token_server())

    def _call_options(self, at_most: Optional[float] = None) -> dict[str, Any]:
        """``retry`` and ``timeout`` for one call: retries stop, and no request waits, past the time left.

        Errors that retrying cannot fix (a host name that does not resolve, refused credentials) are
        not retried at all.
        """
        left = max(self._clock.remaining(), 0.1)
        if at_most is not None:
            left = min(left, at_most)
        base = self.retry
        self._bounded.value = not base.timeout or left < base.timeout
        retry = base.with_timeout(min(base.timeout, left) if base.timeout else left).with_predicate(
            lambda exc: retryable(exc, base))
        return {"retry": retry, "timeout": (min(self.timeout[0], left), min(self.timeout[1], left))}

    def _token_server(self) -> Optional[str]:
        """The host that exchanges the credentials for tokens (a service account's token_uri), if known."""
        from urllib.parse import urlparse

        uri = getattr(getattr(self._client, "_credentials", None), "_token_uri", None)
        return urlparse(uri).hostname if isinstance(uri, str) else None

    def _host(self) -> str:
        """The host the client sends requests to (the emulator's when STORAGE_EMULATOR_HOST is set)."""
        from urllib.parse import urlparse

        base = os.environ.get("STORAGE_EMULATOR_HOST") or ""
        if self._client is not None:
            base = getattr(getattr(self._client, "_connection", None), "API_BASE_URL", "") or base
        return urlparse(base if "://" in base else f"http://{base}").hostname or "storage.googleapis.com"


def remote_timeout() -> float:
    """Seconds a command's remote calls may go without an answer: ``FREEZEFLOW_TIMEOUT`` (set by ``--timeout``), else 60."""
    text = os.environ.get("FREEZEFLOW_TIMEOUT", "")
    try:
        value = float(text) if text else GCSDestination.patience
    except ValueError:
        raise ParameterError(f"FREEZEFLOW_TIMEOUT={text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise ParameterError(f"FREEZEFLOW_TIMEOUT={text!r} must be a positive, finite number of seconds")
    return value


class _Patience:
    """How long remote calls may still wait: ``seconds`` from the last answer (or the first call), shared by the
    threads of one destination. A slow but moving upload keeps getting answers; a dead network does not."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._since: Optional[float] = None
        self._lock = threading.Lock()

    def remaining(self) -> float:
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
            return self.seconds - (time.monotonic() - self._since)

    def answered(self) -> None:
        with self._lock:
            self._since = time.monotonic()


class _AnsweringReader(UploadReader):
    """An upload's reader whose every read (the client sends what it reads) counts as the server keeping up."""

    def __init__(self, handle: Any, index: int, progress: UploadProgress, cancelled: threading.Event,
                 clock: _Patience) -> None:
        super().__init__(handle, index, progress, cancelled)
        self._clock = clock

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self._clock.answered()
        return data


def _file_checksums(item: PublishFile) -> tuple[str, str]:
    """SHA-256 (hex) and CRC32C (base64, as GCS reports it) of a file, read again from disk."""
    sha, crc = hashlib.sha256(), google_crc32c.Checksum()
    with open(item.source, "rb") as handle:
        while chunk := handle.read(4 * _MIB):
            sha.update(chunk)
            crc.update(chunk)
    return sha.hexdigest(), base64.b64encode(crc.digest()).decode()
