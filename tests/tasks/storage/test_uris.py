"""The one gs:// parser: bucket and path, a trailing slash, model and version folders."""

from __future__ import annotations

import pytest

from tasks.core.errors import ParameterError
from tasks.storage.uris import is_gs_uri, split_gs_uri, split_model_uri


def test_split_gs_uri_gives_the_bucket_and_the_path_without_one_trailing_slash() -> None:
    gs = split_gs_uri("gs://bucket/models/team/")
    assert (gs.bucket, gs.path, gs.parts) == ("bucket", "models/team", ("models", "team"))
    assert gs.uri(gs.parts[:1]) == "gs://bucket/models"


def test_a_bucket_alone_has_an_empty_path() -> None:
    gs = split_gs_uri("gs://bucket")
    assert (gs.bucket, gs.path, gs.parts) == ("bucket", "", ())
    assert gs.uri() == "gs://bucket"


def test_empty_segments_stay_in_the_path_for_the_destination_to_refuse() -> None:
    # GCSDestination.from_uri checks the path; the parser must not hide a doubled slash from it.
    assert split_gs_uri("gs://bucket/a//b").path == "a//b"


@pytest.mark.parametrize("uri", ["/models/linear", "s3://bucket/x", "gs:/bucket", "GS://bucket"])
def test_anything_but_gs_is_refused_naming_the_uri(uri: str) -> None:
    assert not is_gs_uri(uri)
    with pytest.raises(ParameterError, match=r"is not a gs://bucket/path URI"):
        split_gs_uri(uri)


@pytest.mark.parametrize("uri, expected", [
    ("gs://b/models/linear/3", ("gs://b/models", "linear", 3)),
    ("gs://b/models/linear/3/", ("gs://b/models", "linear", 3)),
    ("gs://b/linear", ("gs://b", "linear", None)),
    ("gs://b/models/linear", ("gs://b/models", "linear", None)),
    ("gs://b/models/v03", ("gs://b/models", "v03", None)),  # not a plain positive integer: a model folder
])
def test_split_model_uri_finds_the_destination_model_and_version(uri: str, expected: tuple) -> None:
    assert split_model_uri(uri) == expected


@pytest.mark.parametrize("uri", ["gs://b", "gs://b/", "gs://b/3", "gs:///linear/3"])
def test_split_model_uri_is_none_without_a_bucket_or_a_model_folder(uri: str) -> None:
    assert split_model_uri(uri) is None
