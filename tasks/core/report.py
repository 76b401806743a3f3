"""The run report: what each stage did, what it made, and where the model was published; and the
verdict of a validation report, worded once for the validate stage and the upload that refuses it."""

from __future__ import annotations

import json
from typing import Any, Optional

from tasks.core.errors import ValidationFailed
from tasks.core.records import RunSummary, ValidationReport

# How reports and messages name the formats validation compares.
FORMAT_NAMES = {"checkpoint": "checkpoint", "frozen_graph": "frozen graph", "saved_model": "SavedModel",
                "serving": "served SavedModel"}


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def run_markdown(summary: RunSummary) -> str:
    """Markdown for the run summary a flow returns."""
    pub = summary.publication
    lines = [f"# {summary.model_name} v{pub.version}", "",
             f"Published to `{pub.uri}`" + (" (identical content was already there)" if pub.reused else ""), "",
             "| stage | state | seconds |", "|---|---|---|"]
    for stage in summary.stages:
        lines.append(f"| {stage.name} | {stage.state} | {stage.seconds:.2f} |")
    lines += ["", "| file | size | sha256 |", "|---|---|---|"]
    lines += [f"| {f.path} | {_size(f.size)} | `{f.sha256[:16]}…` |" for f in pub.files]
    report = summary.validation
    lines += ["", f"Validation: {'passed' if report.passed else 'FAILED'}, largest difference "
              f"{report.max_abs_difference:.3g} (rtol {report.rtol:g}, atol {report.atol:g}), "
              f"on {report.reference.description}", ""]
    if report.comparisons:
        lines += ["| format | reference | max abs difference | max relative difference |", "|---|---|---|---|"]
        lines += [f"| {FORMAT_NAMES[c.format]} | {FORMAT_NAMES[c.reference]} | {_number(c.max_abs_difference)} | "
                  f"{_number(c.max_rel_difference)} |" for c in report.comparisons]
    if report.reference_inputs and all(not isinstance(p.outputs[0], list) for p in report.predictions):
        lines += ["", "| input | " + " | ".join(p.source for p in report.predictions) + " |",
                  "|---|" + "---|" * len(report.predictions)]
        for i, value in enumerate(report.reference_inputs):
            lines.append(f"| {value} | " + " | ".join(str(p.outputs[i]) for p in report.predictions) + " |")
    if report.rewrites:
        lines += ["", "Graph rewrites:", ""] + [f"- {r}" for r in report.rewrites]
    if summary.losses:
        losses = summary.losses
        lines += ["", f"Training: {len(losses)} epochs, loss {losses[0]:.4g} → {losses[-1]:.4g}"]
    return "\n".join(lines) + "\n"


def _number(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.3g}"


def failure_summary(report: ValidationReport) -> str:
    """One short line: which formats disagree, by how much, where, under which tolerance, and the
    report that holds the arrays (they never go into the line)."""
    failing = [c.detail for c in report.comparisons if not c.passed]
    failing += [f"{c.name}: {c.detail}" for c in report.checks if not c.passed]
    shown = failing[0] + (f"; and {len(failing) - 1} more failed check(s)" if len(failing) > 1 else "")
    return f"validation failed: {shown}; report {report.artifact.path('report.md')}"


def require_passed(report: ValidationReport) -> None:
    """Raise :class:`ValidationFailed` with :func:`failure_summary`, unless everything passed."""
    if not report.passed:
        raise ValidationFailed(failure_summary(report))


def worst_table(report: ValidationReport) -> list[dict[str, Any]]:
    """The worst elements of every pair of formats (from report.json), for a Prefect table artifact."""
    data = json.loads(report.artifact.path("report.json").read_text())
    rows = []
    for c in data["comparisons"]:
        for w in c["worst"]:
            rows.append({"format": FORMAT_NAMES[c["format"]], "reference": FORMAT_NAMES[c["reference"]],
                         "index": "[" + ", ".join(str(i) for i in w["index"]) + "]", "value": w["value"],
                         "reference_value": w["reference"], "abs_difference": w["abs_difference"],
                         "allowed": w["allowed"], "within": w["close"]})
    return rows
