"""The run report: what each stage did, what it made, and where the model was published; and the
verdict of a validation report, worded once for the validate stage and the upload that refuses it."""

from __future__ import annotations

from tasks.core.records import RunSummary

from tasks.core.errors import ValidationFailed
from tasks.core.records import ValidationReport


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
              f"{report.max_abs_difference:.3g} (tolerance {report.tolerance:g})", "",
              "| input | " + " | ".join(p.source for p in report.predictions) + " |",
              "|---|" + "---|" * len(report.predictions)]
    for i, value in enumerate(report.reference_inputs):
        lines.append(f"| {value} | " + " | ".join(str(p.outputs[i]) for p in report.predictions) + " |")
    if summary.losses:
        losses = summary.losses
        lines += ["", f"Training: {len(losses)} epochs, loss {losses[0]:.4g} → {losses[-1]:.4g}"]
    return "\n".join(lines) + "\n"


def require_passed(report: ValidationReport) -> None:
    """Raise :class:`ValidationFailed` naming every failed check, unless all passed."""
    failed = [f"{c.name} ({c.detail})" for c in report.checks if not c.passed]
    if failed:
        raise ValidationFailed(
            f"validation failed, see {report.artifact.path('report.md')}: " + "; ".join(failed)
        )
