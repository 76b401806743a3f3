"""Which versions of a served model are loaded: loading SavedModels and swapping versions in and out.

A :class:`ModelRepository` keeps the newest ``keep_versions`` complete versions of a
:class:`~tasks.serving.sources.ModelSource` loaded and answers TF Serving's version status and
metadata; polling it picks up a version published while the server runs. A version that fails to
load is reported in the status and skipped, and the versions already loaded keep serving.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from tasks.core import layout
from tasks.core.errors import ParameterError
from tasks.serving.rest import (
    DEFAULT_SIGNATURE,
    RequestError,
    SignatureSpec,
    TensorInfo,
)
from tasks.serving.sources import ModelSource

log = logging.getLogger("freezeflow.serving")


@dataclass
class ServedSignature:
    spec: SignatureSpec
    call: Callable[..., Any]


@dataclass
class LoadedVersion:
    """One loaded SavedModel: its callable signatures and the signature_def map TF Serving shows as metadata."""

    version: int
    path: Path
    signatures: dict[str, ServedSignature]
    signature_defs: dict[str, Any]
    holder: Any = field(repr=False, default=None)  # keeps the loaded object (and its variables) alive

    def signature(self, name: str) -> ServedSignature:
        found = self.signatures.get(name or DEFAULT_SIGNATURE)
        if found is None:
            raise RequestError(
                f"Serving signature name: \"{name}\" not found in signature def (has "
                + ", ".join(sorted(self.signatures)) + ")"
            )
        return found

    def predict(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run a signature on numpy inputs; a bad argument is the request's fault (400), not the server's."""
        import tensorflow as tf

        served = self.signature(name)
        tensors = {}
        for key, value in inputs.items():
            dtype = tf.dtypes.as_dtype(served.spec.inputs[key].dtype)
            tensors[key] = tf.constant(value, dtype=dtype) if dtype != tf.bfloat16 else tf.cast(value, tf.bfloat16)
        try:
            outputs = served.call(**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise RequestError(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from exc
        return {key: value.numpy() for key, value in outputs.items()}


def _tensor_info(info: Any) -> TensorInfo:
    import tensorflow as tf

    dtype = tf.dtypes.as_dtype(info.dtype).name
    if info.tensor_shape.unknown_rank:
        return TensorInfo(dtype, None)
    return TensorInfo(dtype, tuple(d.size if d.size >= 0 else None for d in info.tensor_shape.dim))


def load_version(folder: Path, version: int) -> LoadedVersion:
    """Load a SavedModel's ``serve`` meta graph; its predict signatures become callable."""
    import tensorflow as tf
    from google.protobuf.json_format import MessageToDict
    from tensorflow.core.protobuf import saved_model_pb2

    # Read here rather than through tasks.stages.export, which would import Prefect into `freezeflow serve`.
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((folder / layout.SAVED_MODEL).read_bytes())
    tag = layout.SERVING_TAG  # what TF Serving and Vertex AI load
    graphs = [m for m in proto.meta_graphs if tag in m.meta_info_def.tags]
    if not graphs:
        raise ParameterError(f"{folder}: no meta graph tagged {tag!r}")
    meta = graphs[0]
    loaded = tf.saved_model.load(str(folder), tags=[tag])
    signatures = {}
    for key, sig in meta.signature_def.items():
        if key not in loaded.signatures:
            continue  # e.g. __saved_model_init_op: shown in metadata, not callable
        spec = SignatureSpec(key, {k: _tensor_info(v) for k, v in sig.inputs.items()},
                             {k: _tensor_info(v) for k, v in sig.outputs.items()})
        signatures[key] = ServedSignature(spec, loaded.signatures[key])
    # TF Serving prints the proto with its field names and every field, defaults included.
    defs = {key: MessageToDict(sig, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
            for key, sig in meta.signature_def.items()}
    return LoadedVersion(version=version, path=folder, signatures=signatures, signature_defs=defs, holder=loaded)


@dataclass
class VersionState:
    state: str  # TF Serving's ModelVersionStatus.State: LOADING, AVAILABLE, END
    fingerprint: str = ""
    error: str = ""
    failed_at: float = 0.0


class ModelRepository:
    """The loaded versions of one model; :meth:`refresh` brings them in line with the source."""

    def __init__(self, source: ModelSource, keep_versions: int = 2, retry_failed_seconds: float = 60.0,
                 loader: Callable[[Path, int], LoadedVersion] = load_version) -> None:
        if keep_versions < 1:
            raise ParameterError(f"keep_versions must be 1 or more, got {keep_versions}")
        self.source, self.name, self.keep_versions, self._loader = source, source.name, keep_versions, loader
        self.retry_failed_seconds = retry_failed_seconds
        self._loaded: dict[int, LoadedVersion] = {}
        self._states: dict[int, VersionState] = {}
        self._lock = threading.Lock()  # guards the two dicts; loading happens outside it
        self._refreshing = threading.Lock()  # one refresh at a time (poller and explicit calls)
        self._stop = threading.Event()
        self._poller: Optional[threading.Thread] = None

    def refresh(self) -> list[str]:
        """Load the newest complete versions, then unload the ones they replace; returns what changed."""
        with self._refreshing:
            return self._refresh()

    def _refresh(self) -> list[str]:
        changes: list[str] = []
        available = self.source.complete_versions()
        wanted: list[int] = []
        for version in sorted(available, reverse=True):
            if len(wanted) == self.keep_versions:
                break
            state = self._states.get(version)
            if (state and state.error and state.fingerprint == available[version]
                    and time.monotonic() - state.failed_at < self.retry_failed_seconds):
                continue  # failed a moment ago and unchanged since: retry later (a download may have been cut), not every poll
            if version in self._loaded or self._load(version, available[version], changes):
                wanted.append(version)
        with self._lock:
            for version in [v for v in self._loaded if v not in wanted]:
                del self._loaded[version]
                self._states[version] = VersionState("END", available.get(version, ""))
                changes.append(f"unloaded version {version}")
                log.info("%s: unloaded version %d", self.name, version)
        return changes

    def _load(self, version: int, fingerprint: str, changes: list[str]) -> bool:
        with self._lock:
            self._states[version] = VersionState("LOADING", fingerprint)
        try:
            loaded = self._loader(self.source.local_path(version), version)
        except Exception as exc:  # any load failure is reported in the status; the older versions keep serving
            reason = " ".join(str(exc).split())[:500] or type(exc).__name__
            with self._lock:
                self._states[version] = VersionState("END", fingerprint, reason, time.monotonic())
            changes.append(f"version {version} failed to load: {reason}")
            log.warning("%s: version %d failed to load: %s", self.name, version, reason)
            return False
        with self._lock:
            self._loaded[version] = loaded
            self._states[version] = VersionState("AVAILABLE", fingerprint)
        changes.append(f"loaded version {version}")
        log.info("%s: loaded version %d from %s", self.name, version, self.source.description)
        return True

    def versions(self) -> list[int]:
        with self._lock:
            return sorted(self._loaded)

    def get(self, version: Optional[int] = None) -> LoadedVersion:
        """The newest loaded version, or the one asked for."""
        with self._lock:
            if version is None:
                if not self._loaded:
                    raise RequestError(f"Servable not found for request: Latest({self.name})", 404)
                return self._loaded[max(self._loaded)]
            found = self._loaded.get(version)
        if found is None:  # TF Serving's NOT_FOUND, which its REST API answers with 404
            raise RequestError(
                f"Servable not found for request: Specific({self.name}, {version}); loaded versions: "
                + (", ".join(map(str, self.versions())) or "none"), 404
            )
        return found

    def status(self, version: Optional[int] = None) -> dict[str, Any]:
        """TF Serving's GetModelStatusResponse: every version seen, newest first."""
        with self._lock:
            states = dict(self._states)
        if version is not None:
            if version not in states:
                raise RequestError(f"Could not find version {version} of model {self.name}", 404)
            states = {version: states[version]}
        return {"model_version_status": [
            {"version": str(v), "state": s.state,
             "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error}}
            for v, s in sorted(states.items(), reverse=True)
        ]}

    def metadata(self, version: Optional[int] = None) -> dict[str, Any]:
        """TF Serving's GetModelMetadataResponse for a loaded version."""
        loaded = self.get(version)
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(loaded.version)},
            "metadata": {"signature_def": {"signature_def": loaded.signature_defs}},
        }

    def start_polling(self, interval_seconds: float) -> None:
        """Refresh every ``interval_seconds`` in a daemon thread, so new versions are served without a restart."""
        if not self.source.polls or self._poller is not None:
            return
        self._stop.clear()

        def poll() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    self.refresh()
                except Exception:  # a flaky listing must not end polling; the next poll tries again
                    log.exception("%s: polling %s failed", self.name, self.source.description)

        self._poller = threading.Thread(target=poll, name=f"poll-{self.name}", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=30)
            self._poller = None
