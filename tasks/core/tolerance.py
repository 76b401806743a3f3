"""The one rule for "these outputs agree": same shape, every element within ``atol + rtol * |expected|``.

Validation (checkpoint vs frozen graph vs SavedModel), the served-model check and the Vertex AI smoke
prediction all ask this module, so the three can never disagree on what "close enough" means. The rule
is numpy's ``isclose`` (not symmetric: ``expected`` is the reference); NaN never agrees with anything.
Values that are not numbers (strings, booleans mixed with strings) must be equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tasks.core.errors import ParameterError

NUMERIC_KINDS = "fiub"  # numpy dtype kinds compared by difference; anything else by equality


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
