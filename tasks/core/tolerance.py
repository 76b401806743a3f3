"""The one rule for "these outputs agree": same shape, every element within ``atol + rtol * |expected|``;
and, for reports, where two outputs differ most (:func:`measure`, :func:`worst_elements`, :func:`describe`).

Validation (checkpoint vs frozen graph vs SavedModel), the served-model check and the Vertex AI smoke
prediction all ask this module, so the three can never disagree on what "close enough" means. The rule
is numpy's ``isclose`` (not symmetric: ``expected`` is the reference); NaN never agrees with anything.
Values that are not numbers (strings, booleans mixed with strings) must be equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from tasks.core.errors import ParameterError

NUMERIC_KINDS = "fiub"  # numpy dtype kinds compared by difference; anything else by equality
# Validation's defaults; README "Validation" gives the measurements behind them (benchmarks/tolerance.py).
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found. ``max_abs_difference`` is ``inf`` when shapes or non-numbers differ."""

    passed: bool
    got_shape: tuple[int, ...]
    expected_shape: tuple[int, ...]
    max_abs_difference: float
    rtol: float
    atol: float

    @property
    def same_shape(self) -> bool:
        return self.got_shape == self.expected_shape

    def tolerance_text(self) -> str:
        """``tolerance 1e-05`` for an absolute tolerance alone, else ``rtol 0.001, atol 1e-06``."""
        return f"tolerance {self.atol:g}" if self.rtol == 0 else f"rtol {self.rtol:g}, atol {self.atol:g}"


def check_tolerances(rtol: float, atol: float) -> None:
    """Raise :class:`ParameterError` unless both tolerances are finite numbers >= 0."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ParameterError(f"{name} must be a finite number >= 0, got {value!r}")


def compare(got: Any, expected: Any, rtol: float = 0.0, atol: float = 0.0) -> Comparison:
    """Compare ``got`` with the reference ``expected`` (array-likes); passes when every element is close.

    An element is close when ``|got - expected| <= atol + rtol * |expected|``; with ``rtol=0`` this is a
    plain absolute tolerance. Shapes must match exactly (no broadcasting: a (3,) answer for a (3, 1)
    reference is a different answer).
    """
    import numpy as np

    check_tolerances(rtol, atol)
    have, want = np.asarray(got), np.asarray(expected)
    shapes = {"got_shape": tuple(have.shape), "expected_shape": tuple(want.shape), "rtol": rtol, "atol": atol}
    if have.shape != want.shape:
        return Comparison(passed=False, max_abs_difference=math.inf, **shapes)
    if have.dtype.kind not in NUMERIC_KINDS or want.dtype.kind not in NUMERIC_KINDS:
        equal = have.tolist() == want.tolist()
        return Comparison(passed=equal, max_abs_difference=0.0 if equal else math.inf, **shapes)
    if have.size == 0:
        return Comparison(passed=True, max_abs_difference=0.0, **shapes)
    have64, want64 = have.astype("float64"), want.astype("float64")
    difference = np.abs(have64 - want64)
    # NaN compares False, so a NaN anywhere fails; the reported difference is then NaN too.
    close = bool(np.all(difference <= atol + rtol * np.abs(want64)))
    return Comparison(passed=close, max_abs_difference=float(np.max(difference)), **shapes)


def _index(flat: int, shape: Sequence[int]) -> list[int]:
    import numpy as np

    return [int(i) for i in np.unravel_index(flat, tuple(shape))] if shape else []


def measure(left: Any, right: Any, rtol: float, atol: float) -> dict[str, Any]:
    """``left`` against the reference ``right``, in detail, for reports: whether every element is close
    (the rule of :func:`compare`: NaN agrees with nothing), the
    largest absolute and relative differences and their indices, and the worst element (furthest past
    its tolerance)."""
    import numpy as np

    a, b = np.asarray(left), np.asarray(right)
    check_tolerances(rtol, atol)
    result: dict[str, Any] = {
        "passed": False, "shape": list(b.shape), "other_shape": list(a.shape), "elements": int(b.size),
        "mismatched": int(b.size), "max_abs_difference": None, "max_abs_index": None,
        "max_rel_difference": None, "max_rel_index": None, "worst_index": None, "worst_value": None,
        "reference_value": None, "rtol": rtol, "atol": atol,
    }
    if a.shape != b.shape:
        return result
    if not (a.dtype.kind in "fiub" and b.dtype.kind in "fiub"):
        equal = a == b
        result.update(passed=bool(np.all(equal)), mismatched=int(np.size(equal) - np.count_nonzero(equal)))
        return result
    if b.size == 0:
        result.update(passed=True, mismatched=0, max_abs_difference=0.0, max_rel_difference=0.0)
        return result
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(a64 - b64)
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN (or inf - inf) agrees with nothing
        rel = np.where(diff == 0, 0.0, diff / np.abs(b64))
        rel = np.where(np.isnan(rel), np.inf, rel)
        allowed = atol + rtol * np.abs(b64)
        excess = _share_of_allowance(diff, allowed)
    close = diff <= allowed
    worst = int(np.argmax(np.where(close, -1.0, excess))) if not close.all() else int(np.argmax(excess))
    abs_at, rel_at = int(np.argmax(diff)), int(np.argmax(rel))
    result.update(
        passed=bool(close.all()),
        mismatched=int(close.size - np.count_nonzero(close)),
        max_abs_difference=float(diff.flat[abs_at]), max_abs_index=_index(abs_at, b.shape),
        max_rel_difference=float(rel.flat[rel_at]), max_rel_index=_index(rel_at, b.shape),
        worst_index=_index(worst, b.shape), worst_value=float(a64.flat[worst]), reference_value=float(b64.flat[worst]),
    )
    return result


def _share_of_allowance(diff: Any, allowed: Any) -> Any:
    """|a - b| / (atol + rtol |b|) per element: below 1 passes; a difference where nothing is allowed is infinite."""
    import numpy as np

    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(allowed > 0, diff / np.where(allowed > 0, allowed, 1.0), np.where(diff > 0, np.inf, 0.0))
    return np.where(np.isnan(share), np.inf, share)


def worst_elements(left: Any, right: Any, rtol: float, atol: float, count: int = 10) -> list[dict[str, Any]]:
    """The ``count`` elements furthest past their tolerance (largest ``|a-b| / (atol + rtol*|b|)``)."""
    import numpy as np

    a, b = np.asarray(left), np.asarray(right)
    if a.shape != b.shape or a.dtype.kind not in "fiub" or b.dtype.kind not in "fiub" or b.size == 0:
        return []
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.abs(a64 - b64)
        diff = np.where(np.isnan(diff), np.inf, diff)
        allowed = atol + rtol * np.abs(b64)
        excess = _share_of_allowance(diff, allowed)
    order = np.argsort(-excess, kind="stable")[:count]
    return [
        {"index": _index(int(i), b.shape), "value": float(a64[i]), "reference": float(b64[i]),
         "abs_difference": float(diff[i]), "allowed": float(allowed[i]), "close": bool(diff[i] <= allowed[i])}
        for i in order
    ]


def describe(result: dict[str, Any], left: str, right: str) -> str:
    """One short line for a comparison: passing or failing, never the arrays."""
    if result["other_shape"] != result["shape"]:
        return f"{left} has shape {result['other_shape']}, {right} {result['shape']}"
    if result["max_abs_difference"] is None:
        return f"{left} {'equals' if result['passed'] else 'differs from'} {right} ({result['mismatched']} of {result['elements']} differ)"
    tolerance = f"rtol {result['rtol']:g}, atol {result['atol']:g}"
    if result["passed"]:
        return (f"{left} matches {right}: max |difference| {result['max_abs_difference']:.3g}, "
                f"max relative {result['max_rel_difference']:.3g} ({tolerance})")
    return (f"{left} differs from {right} by {result['max_abs_difference']:.3g} at {_at(result['max_abs_index'])} "
            f"(worst element {_at(result['worst_index'])}: {result['worst_value']:.6g} vs {result['reference_value']:.6g}; "
            f"{result['mismatched']} of {result['elements']} elements past {tolerance})")


def _at(index: Optional[list[int]]) -> str:
    return "[" + ", ".join(str(i) for i in index or []) + "]"
