"""Stage 5, validate: the checkpoint, the frozen graph and the SavedModel must give the same answers
(the work is :func:`tasks.tf.validation.validate_model`); a failed validation fails the stage."""

from __future__ import annotations

from typing import Optional


from tasks.core.records import Checkpoint, ExportedModel, FrozenGraph, ReferenceInputs, ValidationReport
from tasks.core.report import require_passed, worst_table
from tasks.stages.cache_policy import stage_task
from tasks.tf.validation import validate_model


@stage_task("validate", ignore=("report_key",))
def validate(
    checkpoint: Checkpoint,
    frozen: FrozenGraph,
    exported: ExportedModel,
    reference: ReferenceInputs,
    rtol: float,
    atol: float,
    report_key: Optional[str] = None,
) -> ValidationReport:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    report = validate_model(checkpoint, frozen, exported, reference, rtol, atol)
    markdown = report.artifact.path("report.md").read_text()
    create_markdown_artifact(markdown=markdown, key=report_key,
                             description="Checkpoint, frozen graph and SavedModel compared")
    create_table_artifact(
        table=[{"check": c.name, "passed": c.passed, "detail": c.detail} for c in report.checks]
        + [{"check": f"{c.format} vs {c.reference}", "passed": c.passed, "detail": c.detail}
           for c in report.comparisons],
        key=f"{report_key}-table" if report_key else None,
        description="Validation checks",
    )
    create_table_artifact(
        table=worst_table(report),
        key=f"{report_key}-worst" if report_key else None,
        description=f"Elements furthest past the tolerance (rtol {rtol:g}, atol {atol:g}), per pair of formats",
    )
    require_passed(report)
    return report
