"""The one "outputs agree" rule: absolute and relative tolerance, shapes, non-numbers, NaN, bad tolerances."""

from __future__ import annotations

import math

import pytest

from tasks.core.errors import ParameterError
from tasks.core.tolerance import compare


def test_absolute_tolerance_passes_at_the_bound_and_fails_past_it() -> None:
    assert compare([1.0, 2.0], [1.0, 2.5], atol=0.5).passed
    beyond = compare([1.0, 2.0], [1.0, 2.5], atol=0.49)
    assert not beyond.passed
    assert beyond.max_abs_difference == pytest.approx(0.5)


def test_relative_tolerance_scales_with_the_expected_value() -> None:
    # 1% of 1000 is 10: a difference of 9 passes there, while the same 9 at 1.0 fails.
    assert compare([1009.0], [1000.0], rtol=0.01).passed
    assert not compare([10.0], [1.0], rtol=0.01).passed
    # The reference is `expected`: against 100 the bound is 7.95 + 1.00, against 109 it is 7.95 + 1.09.
    assert not compare([109.0], [100.0], rtol=0.01, atol=7.95).passed
    assert compare([100.0], [109.0], rtol=0.01, atol=7.95).passed


def test_shapes_must_match_exactly_without_broadcasting() -> None:
    result = compare([1.0, 2.0, 3.0], [[1.0], [2.0], [3.0]], atol=1.0)
    assert not result.passed and not result.same_shape
    assert (result.got_shape, result.expected_shape) == ((3,), (3, 1))
    assert math.isinf(result.max_abs_difference)


def test_nan_never_agrees() -> None:
    result = compare([float("nan"), 1.0], [float("nan"), 1.0], atol=1e9)
    assert not result.passed


def test_values_that_are_not_numbers_must_be_equal() -> None:
    assert compare(["a", "b"], ["a", "b"]).passed
    different = compare(["a", "b"], ["a", "c"], atol=1e9)
    assert not different.passed and math.isinf(different.max_abs_difference)


def test_empty_outputs_agree() -> None:
    result = compare([], [])
    assert result.passed and result.max_abs_difference == 0.0


def test_integers_and_booleans_compare_as_numbers() -> None:
    assert compare([1, 2], [1.0, 2.0]).passed
    assert compare([True, False], [1, 0]).passed


@pytest.mark.parametrize("rtol, atol, named", [(-1e-3, 0.0, "rtol"), (0.0, -1.0, "atol"), (float("nan"), 0.0, "rtol"),
                                               (0.0, float("inf"), "atol")])
def test_a_negative_or_non_finite_tolerance_is_refused_naming_it(rtol: float, atol: float, named: str) -> None:
    with pytest.raises(ParameterError, match=rf"^{named} must be a finite number >= 0"):
        compare([1.0], [1.0], rtol=rtol, atol=atol)


def test_tolerance_text_names_what_was_used() -> None:
    assert compare([1.0], [1.0], atol=1e-5).tolerance_text() == "tolerance 1e-05"
    assert compare([1.0], [1.0], rtol=1e-3, atol=1e-6).tolerance_text() == "rtol 0.001, atol 1e-06"
