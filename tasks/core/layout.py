"""Names and layout of published artifacts, the same in a local folder and in a bucket.

    DEST/MODEL/VERSION/saved_model.pb
    DEST/MODEL/VERSION/variables/variables.index, variables.data-*
    DEST/MODEL/VERSION/frozen_graph.pb
    DEST/MODEL/VERSION/manifest.json        written last: a version exists once this does

VERSION is a positive integer, the convention TF Serving and Vertex AI read. Every other module asks
this one for these names.
"""

from __future__ import annotations

import re

MANIFEST = "manifest.json"
FROZEN_GRAPH = "frozen_graph.pb"
SAVED_MODEL = "saved_model.pb"
MANIFEST_SCHEMA = "freezeflow.manifest/1"

_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def check_model_name(name: str) -> str:
    from tasks.core.errors import ParameterError

    if not _MODEL_NAME.match(name or "") or name in (".", ".."):
        raise ParameterError(
            f"model_name {name!r} must be 1-63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    return name


def version_path(model: str, version: int) -> str:
    return f"{model}/{version}"


def parse_version(name: str) -> int | None:
    """The version a folder name stands for, or None when it is not a plain positive integer."""
    return int(name) if name.isdigit() and not name.startswith("0") else None


def artifact_key(model: str, what: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) stable per model, so the UI shows history."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{model}-{what}".lower()).strip("-")
