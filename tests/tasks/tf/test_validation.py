"""Validation: the three formats must agree, the SavedModel must honour its contract, inputs must fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.guide import write_guide_checkpoint
from tasks.tf.checkpoints import describe_checkpoint
from tasks.core.errors import ParameterError, ValidationFailed
from tasks.tf.freezing import write_frozen_graph
from tasks.tf.validation import require_passed, validate_model


def test_guide_formats_agree_and_report_is_written(guide_records: dict) -> None:
    report = validate_model(guide_records["checkpoint"], guide_records["frozen"], guide_records["exported"],
                            [2.0, 4.0, 6.0], rtol=0.0, atol=1e-6)
    assert report.passed
    assert {p.source: p.outputs for p in report.predictions} == {
        "checkpoint": [2.0, 3.0, 4.0], "frozen_graph": [2.0, 3.0, 4.0], "saved_model": [2.0, 3.0, 4.0]}
    data = json.loads(report.artifact.path("report.json").read_text())
    assert data["passed"] is True and data["reference_inputs"] == [2.0, 4.0, 6.0]
    assert {c["name"] for c in data["checks"]} >= {"tag", "signature", "batch dimension", "no device pins"}
    assert "| 6.0 | 4.0 | 4.0 | 4.0 |" in report.artifact.path("report.md").read_text()


def test_frozen_graph_of_another_model_fails_with_every_violation(guide_records: dict, tmp_path: Path) -> None:
    other = write_frozen_graph(describe_checkpoint(write_guide_checkpoint(tmp_path / "other", m=0.6), output_nodes=["y"]))
    report = validate_model(guide_records["checkpoint"], other, guide_records["exported"], [2.0, 4.0, 6.0])
    assert not report.passed
    with pytest.raises(ValidationFailed) as failure:
        require_passed(report)
    message = str(failure.value)
    assert message.startswith("validation failed: frozen graph differs from checkpoint by 0.6 at [2] "
                              "(worst element [2]: 4.6 vs 4; 3 of 3 elements past rtol 0.0001, atol 1e-05)")
    assert message.endswith(f"report {report.artifact.path('report.md')}") and "\n" not in message
    by_pair = {(c.format, c.reference): c for c in report.comparisons}
    assert not by_pair[("frozen_graph", "checkpoint")].passed and by_pair[("saved_model", "checkpoint")].passed
    assert not by_pair[("saved_model", "frozen_graph")].passed


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([[1.0, 2.0]], r"reference_inputs: each instance has shape \[2\], but input 'x' takes instances of shape \[\]"),
        (["abc"], r"reference_inputs: values of type string cannot feed input 'x' of dtype float32"),
        ([], r"reference_inputs must be a non-empty list"),
        ([1.0, [2.0]], r"reference_inputs"),
    ],
)
def test_reference_inputs_of_the_wrong_shape_or_dtype_are_refused(guide_records: dict, inputs: list, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        validate_model(guide_records["checkpoint"], guide_records["frozen"], guide_records["exported"], inputs)
