"""Which destination a URI names: ``gs://bucket/prefix`` or a local folder."""

from __future__ import annotations

from tasks.core.errors import ParameterError
from tasks.storage.base import Destination
from tasks.storage.local import LocalDestination
from tasks.storage.uris import is_gs_uri


def open_destination(uri: str) -> Destination:
    """The destination a string names: ``gs://bucket/prefix`` or a local folder."""
    if is_gs_uri(uri):
        try:
            from tasks.storage.gcs import GCSDestination
        except ImportError as exc:
            raise ImportError(
                f"destination {uri} needs google-cloud-storage: pip install 'freezeflow[gcs]' ({exc})"
            ) from exc
        return GCSDestination.from_uri(uri)
    if "://" in uri:
        raise ParameterError(f"destination {uri!r}: only local folders and gs://bucket/prefix are supported")
    return LocalDestination(uri)
