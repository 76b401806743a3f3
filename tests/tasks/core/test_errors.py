"""The error family: one base, each member also a built-in, every message one line."""

from __future__ import annotations

import pytest

from tasks.core import errors

import builtins
import re

FAMILY = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, errors.FreezeflowError)]


@pytest.mark.parametrize("kind", [k for k in FAMILY if k is not errors.FreezeflowError], ids=lambda k: k.__name__)
def test_every_error_is_a_freezeflow_error_and_also_a_builtin(kind: type) -> None:
    error = kind("model.meta is missing")
    builtin = [b for b in kind.__mro__ if vars(builtins).get(b.__name__) is b and b not in (Exception, BaseException, object)]
    assert isinstance(error, errors.FreezeflowError) and builtin, f"{kind.__name__} derives from no built-in error"


def test_the_module_docstring_draws_every_error_class() -> None:
    drawn = set(re.findall(r"(?:├──|└──|^\s{4})\s*([A-Z]\w+)", errors.__doc__ or "", re.MULTILINE))
    assert drawn == {k.__name__ for k in FAMILY}


def test_a_message_is_one_line_whatever_it_was_given() -> None:
    error = errors.CheckpointError("model.index\n   is truncated;", "copy it again")
    assert str(error) == "model.index is truncated; copy it again"


def test_an_unknown_output_node_reads_without_keyerror_s_quotes() -> None:
    assert str(errors.OutputNodeError("output node 'z' is not in the graph")) == "output node 'z' is not in the graph"


def test_a_prediction_error_keeps_the_http_status() -> None:
    assert errors.PredictionError("refused", status=429).status == 429
    assert errors.PredictionError("no answer").status is None
