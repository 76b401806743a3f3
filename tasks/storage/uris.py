"""Reading ``gs://`` URIs: the one parser the destination, the serving sources and Vertex AI share.

It imports nothing of Google's, so a URI can be checked (and a bad one refused) without the ``gcs``
extra installed; the bucket and object naming rules themselves live in :mod:`tasks.storage.gcs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tasks.core import layout
from tasks.core.errors import ParameterError

GS_SCHEME = "gs://"


def is_gs_uri(uri: str) -> bool:
    return uri.startswith(GS_SCHEME)


@dataclass(frozen=True)
class GsPath:
    """``gs://BUCKET/PATH``: the bucket and the object path (no leading slash, one trailing slash dropped)."""

    bucket: str
    path: str

    @property
    def parts(self) -> tuple[str, ...]:
        """The path's non-empty segments."""
        return tuple(p for p in self.path.split("/") if p)

    def uri(self, parts: tuple[str, ...] | list[str] = ()) -> str:
        """``gs://BUCKET/part/part``: the bucket with ``parts`` below it."""
        return GS_SCHEME + "/".join([self.bucket, *parts])


def split_gs_uri(uri: str) -> GsPath:
    """``gs://bucket/a/b/`` as ``GsPath("bucket", "a/b")``; :class:`ParameterError` when it is not gs://."""
    if not is_gs_uri(uri):
        raise ParameterError(f"{uri!r} is not a gs://bucket/path URI")
    bucket, _, path = uri[len(GS_SCHEME):].partition("/")
    if path.endswith("/"):
        path = path[:-1]  # one trailing slash is a common way to write a folder
    return GsPath(bucket, path)


def split_model_uri(uri: str) -> Optional[tuple[str, str, Optional[int]]]:
    """``gs://BUCKET/PREFIX/MODEL[/VERSION]`` as (``gs://BUCKET/PREFIX``, MODEL, VERSION or None).

    None when the URI names no bucket or no model folder; each caller says what it expected.
    """
    gs = split_gs_uri(uri)
    parts = list(gs.parts)
    version = layout.parse_version(parts[-1]) if parts else None
    if version is not None:
        parts = parts[:-1]
    if not gs.bucket or not parts:
        return None
    return gs.uri(parts[:-1]), parts[-1], version
