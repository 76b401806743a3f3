"""Reports of two formats' answers: the largest differences and where, the worst elements, one short line."""

from __future__ import annotations

import numpy as np

from tasks.core.tolerance import DEFAULT_ATOL, DEFAULT_RTOL, compare, describe, measure, worst_elements


def test_the_rule_is_numpys_isclose_with_the_reference_second() -> None:
    rng = np.random.default_rng(0)
    reference = rng.uniform(-2, 2, (4, 50)).astype(np.float32)
    other = reference + rng.normal(0, 3e-4, reference.shape).astype(np.float32)
    result = measure(other, reference, rtol=1e-4, atol=1e-4)
    assert result["passed"] == compare(other, reference, rtol=1e-4, atol=1e-4).passed
    expected = np.isclose(other.astype(np.float64), reference.astype(np.float64), rtol=1e-4, atol=1e-4)
    assert result["mismatched"] == int((~expected).sum()) > 0
    assert result["passed"] is False


def test_largest_differences_are_reported_with_their_index() -> None:
    reference = np.array([[1.0, 100.0, 0.001], [2.0, 3.0, 4.0]], dtype=np.float32)
    other = reference.copy()
    other[0, 1] += 0.05   # largest absolute difference, small relative one
    other[0, 2] += 0.0005  # largest relative difference (50 %)
    result = measure(other, reference, rtol=1e-4, atol=1e-5)
    assert result["max_abs_index"] == [0, 1] and abs(result["max_abs_difference"] - 0.05) < 1e-5
    assert result["max_rel_index"] == [0, 2] and abs(result["max_rel_difference"] - 0.5) < 1e-3
    assert result["worst_index"] == [0, 2]  # 0.0005 is 50x its allowance; 0.05 is 5x
    assert result["mismatched"] == 2 and not result["passed"]
    line = describe(result, "frozen graph", "checkpoint")
    assert line.startswith("frozen graph differs from checkpoint by 0.05 at [0, 1] (worst element [0, 2]:")
    assert "2 of 6 elements past rtol 0.0001, atol 1e-05" in line
    worst = worst_elements(other, reference, 1e-4, 1e-5, count=2)
    assert [w["index"] for w in worst] == [[0, 2], [0, 1]] and not worst[0]["close"]


def test_float32_rounding_passes_the_defaults() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (2, 1000))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    in_float32 = probabilities.astype(np.float32)
    result = measure(in_float32, probabilities, DEFAULT_RTOL, DEFAULT_ATOL)
    assert result["passed"], describe(result, "float32", "float64")


def test_shapes_that_differ_never_pass_and_say_so() -> None:
    result = measure(np.zeros((2, 3)), np.zeros((2, 4)), 1e-4, 1e-5)
    assert not result["passed"] and result["mismatched"] == 8
    assert describe(result, "SavedModel", "checkpoint") == "SavedModel has shape [2, 3], checkpoint [2, 4]"


def test_nan_agrees_with_nothing_and_is_the_worst_element() -> None:
    reference = np.array([1.0, np.nan], dtype=np.float32)
    result = measure(np.array([1.0, np.nan], dtype=np.float32), reference, 1e-4, 1e-5)
    assert not result["passed"] and result["worst_index"] == [1] and result["mismatched"] == 1


def test_a_difference_where_nothing_is_allowed_is_the_worst() -> None:
    result = measure(np.array([0.0, 1.5]), np.array([0.0, 1.0]), 0.0, 0.0)
    assert not result["passed"] and result["worst_index"] == [1]


def test_strings_compare_for_equality() -> None:
    assert measure(np.array([b"a", b"b"]), np.array([b"a", b"b"]), 0, 0)["passed"]
    result = measure(np.array([b"a", b"c"]), np.array([b"a", b"b"]), 0, 0)
    assert not result["passed"] and result["mismatched"] == 1
