"""Names and layout of published artifacts: versions, paths, artifact keys and the model-name rule."""

from __future__ import annotations

import pytest

from tasks.core import layout
from tasks.core.errors import ParameterError


@pytest.mark.parametrize("name, version", [("1", 1), ("42", 42), ("0", None), ("007", None), ("-1", None),
                                           ("1.5", None), ("v2", None), ("", None), (".staging-3", None)])
def test_only_a_plain_positive_integer_is_a_version(name: str, version: int | None) -> None:
    assert layout.parse_version(name) == version


def test_a_version_lives_at_model_slash_number() -> None:
    assert layout.version_path("linear", 3) == "linear/3"
    assert layout.parse_version(layout.version_path("linear", 3).rsplit("/", 1)[1]) == 3


@pytest.mark.parametrize("model, what, key", [
    ("linear", "report", "linear-report"),
    ("My.Model_v2", "validation", "my-model-v2-validation"),
    ("m..x", "training", "m-x-training"),
])
def test_artifact_keys_are_lowercase_letters_digits_and_dashes(model: str, what: str, key: str) -> None:
    assert layout.artifact_key(model, what) == key


def test_the_model_name_check_returns_a_good_name_and_refuses_a_bad_one_saying_the_rule() -> None:
    assert layout.check_model_name("resnet-50.v1_b") == "resnet-50.v1_b"
    with pytest.raises(ParameterError, match=r"^model_name 'Linear' must be " + layout.MODEL_NAME_RULE.replace(".", r"\.")):
        layout.check_model_name("Linear")


@pytest.mark.parametrize("bad", ["linear\n", ".", "..", "a/b", "", "x" * 64])
def test_names_that_would_escape_or_break_a_path_are_refused(bad: str) -> None:
    with pytest.raises(ParameterError):
        layout.check_model_name(bad)


def test_file_and_signature_names_are_what_tf_serving_and_vertex_ai_read() -> None:
    assert (layout.SAVED_MODEL, layout.SERVING_TAG, layout.SIGNATURE_KEY) == ("saved_model.pb", "serve", "serving_default")
    assert layout.MANIFEST not in (layout.SAVED_MODEL, layout.FROZEN_GRAPH)
