"""Names and layout of published artifacts, the same in a local folder and in a bucket.

    DEST/MODEL/VERSION/saved_model.pb
    DEST/MODEL/VERSION/variables/variables.index, variables.data-*
    DEST/MODEL/VERSION/frozen_graph.pb
    DEST/MODEL/VERSION/manifest.json        written last: a version exists once this does

VERSION is a positive integer, the convention TF Serving and Vertex AI read. The SavedModel's meta graph
is tagged ``serve`` and its one predict signature is ``serving_default``, what TF Serving and Vertex AI
look up when a request names none. Every other module asks this one for these names, and for the
rule a model name follows.
"""

from __future__ import annotations

import re

MANIFEST = "manifest.json"
FROZEN_GRAPH = "frozen_graph.pb"
SAVED_MODEL = "saved_model.pb"
VARIABLES_PREFIX = "variables/variables"  # the SavedModel's checkpoint: .index and .data-* files
VARIABLES_INDEX = VARIABLES_PREFIX + ".index"
MANIFEST_SCHEMA = "freezeflow.manifest/1"
SERVING_TAG = "serve"  # tf.saved_model.SERVING, spelled out so reading it needs no TensorFlow
SIGNATURE_KEY = "serving_default"  # tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY

# One path segment, the same in a folder and in a bucket; "." and ".." cannot match (the first character is a letter or digit).
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
MODEL_NAME_RULE = "1-63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)


def check_model_name(name: str) -> str:
    from tasks.core.errors import ParameterError

    # fullmatch: with match, "$" would also accept a trailing newline, which pydantic's pattern refuses.
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise ParameterError(f"model_name {name!r} must be {MODEL_NAME_RULE}")
    return name


def version_path(model: str, version: int) -> str:
    return f"{model}/{version}"


def parse_version(name: str) -> int | None:
    """The version a folder name stands for, or None when it is not a plain positive integer."""
    return int(name) if name.isdigit() and not name.startswith("0") else None


def artifact_key(model: str, what: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) stable per model, so the UI shows history."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{model}-{what}".lower()).strip("-")
