"""Measurement: how far TensorFlow's own float32 answers stray between formats, and how far a wrong
constant moves them, on real architectures: the numbers behind validation's default rtol and atol.

For each architecture (tests/support/real_models.py: Keras layers and application models saved as TF1
Saver checkpoints with seeded weights and batch-norm statistics) it runs a generated batch through

* the checkpoint restored by TensorFlow (the reference, as validation uses it),
* TensorFlow's own frozen graph (convert_variables_to_constants) and freezeflow's (the streaming engine),
* TensorFlow's frozen graph with one constant made wrong: a batch-norm scale 1 % off, one kernel
  element off by 0.05,

and prints the largest absolute and relative difference against the reference, and the worst
element's share of its allowance |a - b| / (atol + rtol |b|) at the defaults (below 1 passes).
Writes benchmarks/results/tolerance.json.

    python benchmarks/tolerance.py              # resnet (small), text_lstm, mobilenet, ResNet50 at 64x64
    python benchmarks/tolerance.py --quick      # the small ones only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "tolerance.json"
sys.path.insert(0, str(REPO))


def share_of_allowance(other: Any, reference: Any, rtol: float, atol: float) -> float:
    import numpy as np

    a, b = np.asarray(other, np.float64), np.asarray(reference, np.float64)
    return float(np.max(np.abs(a - b) / (atol + rtol * np.abs(b))))


def measure(kind: str, folder: Path) -> dict[str, Any]:
    import copy

    import numpy as np
    import tensorflow as tf

    from tasks.core.tolerance import DEFAULT_ATOL, DEFAULT_RTOL
    from tasks.core.tolerance import measure as differences
    from tasks.freeze_engine import freeze_checkpoint
    from tests.support import real_models

    model = real_models.save_real_model(kind, folder)
    batch = real_models.sample_input(kind, batch=4, seed=7)
    unfrozen, tf_frozen = real_models.tf_frozen_reference(model, batch)
    freeze_checkpoint(model.prefix, [model.output_name], folder / "engine.pb")

    def run(graph_def: Any) -> Any:
        with tf.Graph().as_default(), tf.compat.v1.Session() as session:
            tf.import_graph_def(graph_def, name="")
            return session.run(model.output_name + ":0", {model.input_name + ":0": batch})

    with tf.Graph().as_default() as graph, tf.compat.v1.Session() as session:
        tf.compat.v1.train.import_meta_graph(str(model.prefix) + ".meta").restore(session, str(model.prefix))
        frozen_def = tf.compat.v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), [model.output_name])
    engine = run(tf.compat.v1.GraphDef.FromString((folder / "engine.pb").read_bytes()))
    rows: dict[str, Any] = {}

    def row(label: str, values: Any) -> None:
        result = differences(values, unfrozen, DEFAULT_RTOL, DEFAULT_ATOL)
        rows[label] = {"max_abs": result["max_abs_difference"], "max_rel": result["max_rel_difference"],
                       "share_of_allowance": share_of_allowance(values, unfrozen, DEFAULT_RTOL, DEFAULT_ATOL),
                       "passes_defaults": result["passed"]}

    row("TF frozen graph", tf_frozen)
    row("freezeflow frozen graph", engine)
    gammas = [n for n in frozen_def.node if n.op == "Const" and n.name.endswith("/gamma")]
    kernels = [n for n in frozen_def.node if n.op == "Const" and n.name.endswith("/kernel")]
    for label, candidates, change in (
        ("batch-norm scale 1 % off", gammas, lambda a: a * np.float32(1.01)),
        ("one kernel element +0.05", kernels, lambda a: (a.reshape(-1).__setitem__(0, a.reshape(-1)[0] + 0.05), a)[1]),
    ):
        if not candidates:
            continue
        wrong = copy.deepcopy(frozen_def)
        node = next(n for n in wrong.node if n.name == candidates[0].name)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(change(tf.make_ndarray(node.attr["value"].tensor).copy())))
        row(f"{label} ({node.name})", run(wrong))
    return {"outputs": list(unfrozen.shape), "largest_output": float(np.max(unfrozen)), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small architectures only")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tasks.core.tolerance import DEFAULT_ATOL, DEFAULT_RTOL

    kinds = ["resnet", "text_lstm", "mobilenet"] + ([] if args.quick else ["resnet50"])
    results: dict[str, Any] = {"rtol": DEFAULT_RTOL, "atol": DEFAULT_ATOL, "models": {}}
    with tempfile.TemporaryDirectory(prefix="tolerance-bench-") as work:
        for kind in kinds:
            print(f"measuring {kind} ...", file=sys.stderr, flush=True)
            results["models"][kind] = measure(kind, Path(work) / kind)
    header = f"{'model':<10} {'format against the checkpoint':<52} {'max abs':>9} {'max rel':>9} {'share':>8} {'passes':>7}"
    print(f"\ndefaults: rtol {DEFAULT_RTOL:g}, atol {DEFAULT_ATOL:g}; share = max |a-b| / (atol + rtol |b|)")
    print(f"{header}\n{'-' * len(header)}")
    for kind, model in results["models"].items():
        for label, r in model["rows"].items():
            print(f"{kind:<10} {label:<52} {r['max_abs']:>9.2e} {r['max_rel']:>9.2e} {r['share_of_allowance']:>8.3f} "
                  f"{'yes' if r['passes_defaults'] else 'no':>7}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
