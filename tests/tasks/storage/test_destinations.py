"""Which destination a string names: a folder or gs://, anything else refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.errors import ParameterError
from tasks.storage.destinations import open_destination
from tasks.storage.local import LocalDestination


def test_a_path_opens_a_local_folder(tmp_path: Path) -> None:
    destination = open_destination(str(tmp_path / "published"))
    assert isinstance(destination, LocalDestination) and destination.uri == str(tmp_path / "published")


def test_a_gs_uri_opens_the_bucket_and_prefix_without_contacting_it() -> None:
    from tasks.storage.gcs import GCSDestination

    destination = open_destination("gs://freezeflow-models/team/")
    assert isinstance(destination, GCSDestination)
    assert (destination.bucket_name, destination.prefix, destination.uri) == (
        "freezeflow-models", "team", "gs://freezeflow-models/team")


@pytest.mark.parametrize("uri, message", [
    ("s3://bucket/models", "only local folders and gs://bucket/prefix are supported"),
    ("gs://Bad_Bucket/x", "bucket name 'Bad_Bucket'"),
    ("gs://bucket/a//b", "has an empty, '.' or '..' segment"),
])
def test_other_schemes_and_malformed_gs_uris_are_refused(uri: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message.replace(".", r"\.").replace("/", "/")):
        open_destination(uri)
