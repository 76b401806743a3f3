"""Validation: the checkpoint, the frozen graph and the SavedModel must give the same answers.

It runs the same reference inputs through all three, checks the SavedModel's contract (tag,
signature key, dtypes, a dynamic batch dimension) and that no device pins remain, and writes a report
(``report.json`` and ``report.md``). Every violation is collected into one message; nothing that
disagrees is let through with a warning.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from tasks.core import workspace
from tasks.core.cache_keys import stage_token
from tasks.core.errors import ParameterError
from tasks.freeze_engine.devices import pinned_nodes
from tasks.core.layout import SERVING_TAG
from tasks.core.records import (
    Artifact,
    Checkpoint,
    CheckResult,
    Comparison,
    ExportedModel,
    FrozenGraph,
    ModelInterface,
    Prediction,
    ReferenceInputs,
    ValidationReport,
)
from tasks.core.reference_inputs import describe_reference
from tasks.core.report import FORMAT_NAMES, require_passed
from tasks.core.tolerance import DEFAULT_ATOL, DEFAULT_RTOL, check_tolerances, describe, measure, worst_elements
from tasks.serving.server import serving_check
from tasks.freeze_engine.reader import read_graph_def
from tasks.tf.running import predict_checkpoint, predict_frozen, predict_saved_model
from tasks.freeze_engine.reader import read_saved_model

__all__ = ["contract_checks", "markdown_report", "reference_batch", "require_passed", "validate_model"]


def reference_batch(reference_inputs: Any, interface: ModelInterface, where: str = "reference_inputs") -> Any:
    """The reference inputs (a list of instances or an array) as one batch of the model's input dtype;
    wrong shape or dtype is refused, naming ``where`` they came from."""
    import numpy as np

    spec = interface.input
    if isinstance(reference_inputs, np.ndarray):
        if reference_inputs.ndim == 0 or reference_inputs.shape[0] == 0:
            raise ParameterError(f"{where}: expected a batch (first dimension: instances), got shape "
                                 f"{list(reference_inputs.shape)}")
    elif not isinstance(reference_inputs, list) or not reference_inputs:
        raise ParameterError(f"{where} must be a non-empty list of instances, e.g. [2.0, 4.0, 6.0]")
    try:
        raw = np.asarray(reference_inputs)
    except ValueError as exc:
        raise ParameterError(f"{where}: instances have different shapes ({exc})") from exc
    if raw.dtype.kind in "OUS" and spec.dtype != "string":
        raise ParameterError(
            f"{where}: values of type {raw.dtype.kind == 'O' and 'mixed' or 'string'} cannot feed input "
            f"{spec.name!r} of dtype {spec.dtype}"
        )
    if spec.dtype.startswith(("int", "uint")) and raw.dtype.kind == "f" and not np.all(np.mod(raw, 1) == 0):
        raise ParameterError(f"{where}: non-integer values cannot feed input {spec.name!r} of dtype {spec.dtype}")
    if spec.dtype == "bool" and raw.dtype.kind != "b":
        raise ParameterError(f"{where}: input {spec.name!r} takes booleans (true/false)")
    batch = raw.astype(np.dtype(spec.dtype) if spec.dtype not in ("string", "bfloat16") else object)
    if spec.shape is not None:
        want = spec.shape[1:]
        got = batch.shape[1:]
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
            shown = "[" + ", ".join("?" if d is None else str(d) for d in want) + "]"
            raise ParameterError(
                f"{where}: each instance has shape {list(got)}, but input {spec.name!r} takes instances "
                f"of shape {shown} (dtype {spec.dtype})"
            )
    return batch


def contract_checks(exported: ExportedModel, frozen: FrozenGraph, interface: ModelInterface,
                    frozen_def: Any = None) -> list[CheckResult]:
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
    frozen_def = frozen_def if frozen_def is not None else read_graph_def(frozen.graph_path)
    pinned += pinned_nodes(frozen_def)
    checks.append(CheckResult(name="no device pins", passed=not pinned,
                              detail="none" if not pinned else "pinned: " + ", ".join(pinned[:5])))
    return checks


# Each pair: (format, reference). The checkpoint is the reference of the other two; the frozen graph
# and the SavedModel are also held to each other, so a report says which one strayed.
PAIRS = (("frozen_graph", "checkpoint"), ("saved_model", "checkpoint"), ("saved_model", "frozen_graph"))
WORST_ELEMENTS = 10


def reference_array(reference: ReferenceInputs, checkpoint: Checkpoint, exported: ExportedModel,
                    frozen_def: Any) -> Any:
    """The batch ``reference`` stands for, checked against the model's input."""
    from tasks.core import reference_inputs

    assert checkpoint.interface is not None
    spec = checkpoint.interface.input
    if reference.source == "inline":
        return reference_batch(list(reference.values or []), checkpoint.interface)
    if reference.source == "file":
        return reference_batch(reference_inputs.load_file(reference, spec, exported.input_key), checkpoint.interface,
                               where=f"reference inputs file {reference.file}")
    high = reference_inputs.embedding_rows(frozen_def, frozen_input_node(spec.name))
    return reference_inputs.generate(spec, reference.seed, reference.batch_size, integer_high=high)


def frozen_input_node(name: str) -> str:
    return name.split(":")[0]


def markdown_report(data: dict[str, Any]) -> str:
    lines = ["# Validation", "",
             f"**{'PASSED' if data['passed'] else 'FAILED'}**: elements pass when |a − b| ≤ atol + rtol·|b| "
             f"(b the reference), rtol {data['rtol']:g}, atol {data['atol']:g}.", "",
             f"Reference inputs: {data['reference']['description']}, shape {data['input_shape']}; "
             f"outputs of shape {data['output_shape']}. Arrays: `arrays.npz`.", "",
             "| format | reference | max abs difference | at | max relative difference | at | elements past tolerance | result |",
             "|---|---|---|---|---|---|---|---|"]
    for c in data["comparisons"]:
        lines.append(
            f"| {FORMAT_NAMES[c['format']]} | {FORMAT_NAMES[c['reference']]} | {_num(c['max_abs_difference'])} | "
            f"{_at(c['max_abs_index'])} | {_num(c['max_rel_difference'])} | {_at(c['max_rel_index'])} | "
            f"{c['mismatched']} of {c['elements']} | {'ok' if c['passed'] else 'FAILED'} |")
    failing = [c for c in data["comparisons"] if not c["passed"] and c["worst"]]
    for c in failing:
        lines += ["", f"Worst elements, {FORMAT_NAMES[c['format']]} against {FORMAT_NAMES[c['reference']]}:", "",
                  "| index | value | reference | abs difference | allowed |", "|---|---|---|---|---|"]
        lines += [f"| {_at(w['index'])} | {w['value']:.8g} | {w['reference']:.8g} | {w['abs_difference']:.3g} | "
                  f"{w['allowed']:.3g} |" for w in c["worst"]]
    if data.get("reference_inputs") is not None and data.get("small"):
        preds = {p["source"]: p["outputs"] for p in data["predictions"]}
        lines += ["", "| input | checkpoint | frozen graph | SavedModel |", "|---|---|---|---|"]
        for i, value in enumerate(data["reference_inputs"]):
            cells = [json.dumps(preds[src][i]) for src in ("checkpoint", "frozen_graph", "saved_model")]
            lines.append(f"| {json.dumps(value)} | " + " | ".join(cells) + " |")
    if data["rewrites"]:
        lines += ["", "Rewrites (the graph was changed before freezing and export):", ""]
        lines += [f"- {r}" for r in data["rewrites"]]
    lines += ["", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c['name']} | {'ok' if c['passed'] else 'FAILED'} | {c['detail']} |" for c in data["checks"]]
    return "\n".join(lines) + "\n"


def _num(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.3g}"


def _at(index: Optional[list[int]]) -> str:
    return "–" if index is None else "[" + ", ".join(str(i) for i in index) + "]"


def finite_checks(outputs: dict[str, Any], inline: Optional[list] = None) -> list[CheckResult]:
    """One check per format whose numeric outputs hold nan or inf, naming the first instance affected
    (its value when the reference inputs were given inline)."""
    import numpy as np

    checks = []
    for source, out in outputs.items():
        if out.dtype.kind not in "fc" or np.all(np.isfinite(out)):
            continue
        bad = ~np.isfinite(out.reshape(out.shape[0], -1)).all(axis=1) if out.ndim else np.array([True])
        first = int(np.argmax(bad))
        at = repr(inline[first]) if inline is not None and first < len(inline) else f"instance {first}"
        checks.append(CheckResult(
            name=f"{source} outputs are finite", passed=False,
            detail=f"the {FORMAT_NAMES.get(source, source)} gives {out.reshape(-1)[~np.isfinite(out.reshape(-1))][0]} "
                   f"for {int(bad.sum())} of {len(bad)} reference inputs (first: {at}); "
                   "the model itself is broken (did training diverge?)",
        ))
    return checks


def comparison_record(fmt: str, ref: str, result: dict[str, Any]) -> Comparison:
    return Comparison(format=fmt, reference=ref, detail=describe(result, FORMAT_NAMES[fmt], FORMAT_NAMES[ref]),
                      **{k: result[k] for k in Comparison.model_fields if k in result})


def validate_model(
    checkpoint: Checkpoint,
    frozen: FrozenGraph,
    exported: ExportedModel,
    reference: ReferenceInputs | list,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> ValidationReport:
    """Compare the three formats on the reference batch; the report says whether they agree (see :func:`require_passed`)."""
    import numpy as np

    if isinstance(reference, list):
        reference = describe_reference(reference, None, 0, 2)
    check_tolerances(rtol, atol)
    assert checkpoint.interface is not None
    for record in (checkpoint, frozen, exported):
        record.artifact.verify()
    frozen_def = read_graph_def(frozen.graph_path)
    batch = reference_array(reference, checkpoint, exported, frozen_def)
    outputs = {
        "checkpoint": np.asarray(predict_checkpoint(checkpoint, batch)),
        "frozen_graph": np.asarray(predict_frozen(frozen, batch)),
        "saved_model": np.asarray(predict_saved_model(exported, batch)),
    }
    # A nan or inf answer is a broken model, whatever the formats agree on: said first, and comparing is moot.
    finite = finite_checks(outputs, reference.values if reference.source == "inline" else None)
    checks = [*finite, *contract_checks(exported, frozen, checkpoint.interface, frozen_def)]
    del frozen_def
    pairs = PAIRS if all(c.passed for c in finite) else ()
    # The guide's last step: the SavedModel behind TF Serving's REST contract gives the same answers.
    if pairs:
        checks.append(serving_check(exported, batch.tolist(), outputs["checkpoint"].tolist(), rtol=rtol, atol=atol))
    results = {pair: measure(outputs[pair[0]], outputs[pair[1]], rtol, atol) for pair in pairs}
    comparisons = tuple(comparison_record(fmt, ref, result) for (fmt, ref), result in results.items())
    worst = {pair: worst_elements(outputs[pair[0]], outputs[pair[1]], rtol, atol, WORST_ELEMENTS) for pair in pairs}
    passed = all(c.passed for c in checks) and all(c.passed for c in comparisons)
    token = stage_token("validate", __name__, {"c": checkpoint, "f": frozen, "e": exported, "r": reference,
                                                    "rtol": rtol, "atol": atol})
    max_abs = max((c.max_abs_difference if c.max_abs_difference is not None else float("inf") for c in comparisons),
                  default=float("inf"))
    inline = reference.values if reference.source == "inline" else None
    rewrites = tuple(checkpoint.rewrites) + tuple(frozen.rewrites)
    small = batch.size <= 64 and outputs["checkpoint"].size <= 64
    data = {
        "passed": passed,
        "rtol": rtol,
        "atol": atol,
        "reference": {**reference.model_dump(mode="json"), "description": reference.description},
        "input_shape": list(batch.shape),
        "output_shape": list(outputs["checkpoint"].shape),
        "reference_inputs": inline,
        "small": small,
        "comparisons": [{**c.model_dump(mode="json"), "worst": worst[(c.format, c.reference)]} for c in comparisons],
        "predictions": [{"source": s, "outputs": o.tolist()} for s, o in outputs.items()],
        "max_abs_difference": max_abs if np.isfinite(max_abs) else -1.0,
        "rewrites": list(rewrites),
        "checks": [c.model_dump() for c in checks],
    }
    final = workspace.stage_dir("validate", token)
    with workspace.building(final) as scratch:
        (scratch / "report.json").write_text(json.dumps(data, indent=2) + "\n")
        (scratch / "report.md").write_text(markdown_report(data))
        with (scratch / "arrays.npz").open("wb") as handle:
            np.savez(handle, inputs=batch if batch.dtype != object else batch.astype(str), **outputs)
    return ValidationReport(
        passed=passed,
        rtol=rtol,
        atol=atol,
        reference=reference,
        reference_inputs=list(inline) if inline is not None else [],
        predictions=tuple(Prediction(source=s, outputs=o.tolist()) for s, o in outputs.items()),
        max_abs_difference=data["max_abs_difference"],
        comparisons=comparisons,
        rewrites=rewrites,
        checks=tuple(checks),
        artifact=Artifact.of(final),
    )
