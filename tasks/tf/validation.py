"""Validation: the checkpoint, the frozen graph and the SavedModel must give the same answers.

It runs the same reference inputs through all three, checks the SavedModel's contract (tag,
signature key, dtypes, a dynamic batch dimension) and that no device pins remain, and writes a report
(``report.json`` and ``report.md``). Every violation is collected into one message; nothing that
disagrees is let through with a warning.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.core import workspace
from tasks.core.cache_keys import stage_token
from tasks.core.errors import ParameterError
from tasks.core.layout import SERVING_TAG
from tasks.freeze_engine.devices import pinned_nodes
from tasks.core.records import (
    Artifact,
    Checkpoint,
    CheckResult,
    ExportedModel,
    FrozenGraph,
    ModelInterface,
    Prediction,
    ValidationReport,
)
from tasks.core.report import require_passed
from tasks.core.tolerance import compare
from tasks.serving.server import serving_check
from tasks.freeze_engine.reader import read_graph_def
from tasks.tf.running import predict_checkpoint, predict_frozen, predict_saved_model
from tasks.freeze_engine.reader import read_saved_model

__all__ = ["contract_checks", "markdown_report", "reference_batch", "require_passed", "validate_model"]


def reference_batch(reference_inputs: list, interface: ModelInterface) -> Any:
    """The reference inputs as one batch of the model's input dtype; wrong shape or dtype is refused."""
    import numpy as np

    spec = interface.input
    if not isinstance(reference_inputs, list) or not reference_inputs:
        raise ParameterError("reference_inputs must be a non-empty list of instances, e.g. [2.0, 4.0, 6.0]")
    try:
        raw = np.asarray(reference_inputs)
    except ValueError as exc:
        raise ParameterError(f"reference_inputs: instances have different shapes ({exc})") from exc
    if raw.dtype.kind in "OUS" and spec.dtype != "string":
        raise ParameterError(
            f"reference_inputs: values of type {raw.dtype.kind == 'O' and 'mixed' or 'string'} cannot feed input "
            f"{spec.name!r} of dtype {spec.dtype}"
        )
    if spec.dtype.startswith(("int", "uint")) and raw.dtype.kind == "f" and not np.all(np.mod(raw, 1) == 0):
        raise ParameterError(f"reference_inputs: non-integer values cannot feed input {spec.name!r} of dtype {spec.dtype}")
    if spec.dtype == "bool" and raw.dtype.kind != "b":
        raise ParameterError(f"reference_inputs: input {spec.name!r} takes booleans (true/false)")
    batch = raw.astype(np.dtype(spec.dtype) if spec.dtype not in ("string", "bfloat16") else object)
    if spec.shape is not None:
        want = spec.shape[1:]
        got = batch.shape[1:]
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
            shown = "[" + ", ".join("?" if d is None else str(d) for d in want) + "]"
            raise ParameterError(
                f"reference_inputs: each instance has shape {list(got)}, but input {spec.name!r} takes instances "
                f"of shape {shown} (dtype {spec.dtype})"
            )
    return batch


def contract_checks(exported: ExportedModel, frozen: FrozenGraph, interface: ModelInterface) -> list[CheckResult]:
    """The SavedModel's tag, signature, dtypes and batch dimension; device pins in either graph."""
    import tensorflow as tf

    checks: list[CheckResult] = []
    proto = read_saved_model(exported.artifact.path())
    graphs = [m for m in proto.meta_graphs if SERVING_TAG in m.meta_info_def.tags]
    checks.append(CheckResult(name="tag", passed=bool(graphs), detail=f"meta graph tagged {SERVING_TAG!r}"))
    if not graphs:
        return checks
    meta = graphs[0]
    signature = meta.signature_def.get(exported.signature_key)
    checks.append(CheckResult(name="signature", passed=signature is not None,
                              detail=f"signature {exported.signature_key!r} present"))
    if signature is None:
        return checks
    for role, key, want in (("input", exported.input_key, interface.input.dtype),
                            ("output", exported.output_key, interface.output.dtype)):
        table = signature.inputs if role == "input" else signature.outputs
        info = table.get(key)
        if info is None:
            checks.append(CheckResult(name=f"{role} key", passed=False,
                                      detail=f"signature has no {role} {key!r} (has {sorted(table)})"))
            continue
        got = tf.dtypes.as_dtype(info.dtype).name
        checks.append(CheckResult(name=f"{role} dtype", passed=got == want, detail=f"{key}: {got}, expected {want}"))
        if role == "input":
            shape = info.tensor_shape
            dynamic = shape.unknown_rank or (len(shape.dim) > 0 and shape.dim[0].size == -1)
            checks.append(CheckResult(name="batch dimension", passed=dynamic,
                                      detail="dynamic" if dynamic else f"fixed at {shape.dim[0].size if shape.dim else 'scalar'}"))
    pinned = pinned_nodes(meta.graph_def)
    frozen_def = read_graph_def(frozen.graph_path)
    pinned += pinned_nodes(frozen_def)
    checks.append(CheckResult(name="no device pins", passed=not pinned,
                              detail="none" if not pinned else "pinned: " + ", ".join(pinned[:5])))
    return checks


def markdown_report(report_data: dict[str, Any]) -> str:
    lines = ["# Validation", "", f"**{'PASSED' if report_data['passed'] else 'FAILED'}**, tolerance "
             f"{report_data['tolerance']:g}, largest difference {report_data['max_abs_difference']:.3g}", "",
             "| input | checkpoint | frozen graph | SavedModel |", "|---|---|---|---|"]
    preds = {p["source"]: p["outputs"] for p in report_data["predictions"]}
    for i, value in enumerate(report_data["reference_inputs"]):
        cells = [json.dumps(preds.get(src, [None] * (i + 1))[i]) for src in ("checkpoint", "frozen_graph", "saved_model")]
        lines.append(f"| {json.dumps(value)} | " + " | ".join(cells) + " |")
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c['name']} | {'ok' if c['passed'] else 'FAILED'} | {c['detail']} |" for c in report_data["checks"]]
    return "\n".join(lines) + "\n"


def finite_checks(outputs: dict[str, Any], reference_inputs: list) -> list[CheckResult]:
    """One check per format whose numeric outputs hold nan or inf, naming the first reference input affected."""
    import numpy as np

    names = {"checkpoint": "checkpoint", "frozen_graph": "frozen graph", "saved_model": "SavedModel"}
    checks = []
    for source, out in outputs.items():
        if out.dtype.kind not in "fc" or np.all(np.isfinite(out)):
            continue
        bad = ~np.isfinite(out.reshape(out.shape[0], -1)).all(axis=1) if out.ndim else np.array([True])
        first = int(np.argmax(bad))
        at = reference_inputs[first] if out.ndim and first < len(reference_inputs) else reference_inputs
        checks.append(CheckResult(
            name=f"{source} outputs are finite", passed=False,
            detail=f"the {names.get(source, source)} gives {out.reshape(-1)[~np.isfinite(out.reshape(-1))][0]} for "
                   f"{int(bad.sum())} of {len(bad)} reference inputs (first: {at!r}); the model itself is broken "
                   "(did training diverge?)",
        ))
    return checks


def validate_model(
    checkpoint: Checkpoint,
    frozen: FrozenGraph,
    exported: ExportedModel,
    reference_inputs: list,
    tolerance: float = 1e-6,
) -> ValidationReport:
    """Compare the three formats on ``reference_inputs``; the report says whether they agree (see :func:`require_passed`)."""
    import numpy as np

    if not tolerance >= 0:
        raise ParameterError(f"tolerance must be 0 or more, got {tolerance}")
    assert checkpoint.interface is not None
    for record in (checkpoint, frozen, exported):
        record.artifact.verify()
    batch = reference_batch(reference_inputs, checkpoint.interface)
    outputs = {
        "checkpoint": np.asarray(predict_checkpoint(checkpoint, batch)),
        "frozen_graph": np.asarray(predict_frozen(frozen, batch)),
        "saved_model": np.asarray(predict_saved_model(exported, batch)),
    }
    # A nan or inf answer is a broken model, whatever the formats agree on: said first, and comparing is moot.
    finite = finite_checks(outputs, reference_inputs)
    checks = [*finite, *contract_checks(exported, frozen, checkpoint.interface)]
    reference = outputs["checkpoint"]
    compared = ("frozen_graph", "saved_model") if all(c.passed for c in finite) else ()
    # The guide's last step: the SavedModel behind TF Serving's REST contract gives the same answers.
    if compared:
        checks.append(serving_check(exported, reference_inputs, reference.tolist(), tolerance))
    max_diff = 0.0
    for source in compared:
        out = outputs[source]
        comparison = compare(out, reference, rtol=0.0, atol=tolerance)
        max_diff = max(max_diff, comparison.max_abs_difference)
        checks.append(CheckResult(
            name=f"{source} matches checkpoint", passed=comparison.passed,
            detail=f"shape {list(out.shape)} vs {list(reference.shape)}, max |difference| {comparison.max_abs_difference:.3g}",
        ))
    passed = all(c.passed for c in checks)
    token = stage_token("validate", __name__,
                        {"c": checkpoint, "f": frozen, "e": exported, "r": reference_inputs, "t": tolerance})
    data = {
        "passed": passed,
        "tolerance": tolerance,
        "reference_inputs": reference_inputs,
        "predictions": [{"source": s, "outputs": o.tolist()} for s, o in outputs.items()],
        "max_abs_difference": max_diff if np.isfinite(max_diff) else -1.0,
        "checks": [c.model_dump() for c in checks],
    }
    final = workspace.stage_dir("validate", token)
    with workspace.building(final) as scratch:
        (scratch / "report.json").write_text(json.dumps(data, indent=2) + "\n")
        (scratch / "report.md").write_text(markdown_report(data))
    return ValidationReport(
        passed=passed,
        tolerance=tolerance,
        reference_inputs=reference_inputs,
        predictions=tuple(Prediction(source=s, outputs=o.tolist()) for s, o in outputs.items()),
        max_abs_difference=data["max_abs_difference"],
        checks=tuple(checks),
        artifact=Artifact.of(final),
    )
