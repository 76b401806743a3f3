"""Benchmark: freezing a checkpoint with TensorFlow's tools against the streaming freeze engine.

Builds two TF1 checkpoints (about 100M float32 parameters, largest variable 25M; and about four
times that, largest variable 100M), and one real architecture (Keras's own ResNet50, 25.6M
parameters, 1000 classes, seeded weights and batch-norm statistics, saved with a TF1 Saver from a
graph-mode build; MobileNet 0.25 with --quick), then freezes each with

* `freeze_graph`: tensorflow.python.tools.freeze_graph.freeze_graph (when TensorFlow still ships it),
* `guide`: import_meta_graph + restore + tf.compat.v1.graph_util.convert_variables_to_constants,
  then the GraphDef written to disk,
* `engine`: tasks.freeze_engine.freeze_checkpoint,

each run in a fresh subprocess, median of --repeats. Reported per run: the freeze's wall time
inside the child (after imports), the child's whole wall time (interpreter start and imports
included) and its peak RSS (VmHWM). Prints a table and writes JSON to
benchmarks/results/freeze.json.

    python benchmarks/freeze.py            # full: ~2 GiB of temporary files, a few minutes
    python benchmarks/freeze.py --quick    # small models, one repeat: a sanity run
    python benchmarks/freeze.py --real-only  # the ResNet50 row alone
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "freeze.json"
METHODS = ("freeze_graph", "guide", "engine")
MIB = 1 << 20

# (name, layer widths): a chain of matmuls x @ W0 @ W1 ..., one variable per layer.
FULL_MODELS = (("100M", (5000,) * 4), ("400M", (10000,) * 4))
QUICK_MODELS = (("4M", (1000,) * 4), ("16M", (2000,) * 4))
# (name, tests.support.real_models kind): real architectures, output node "probs".
FULL_REAL_MODELS = (("ResNet50", "resnet50"),)
QUICK_REAL_MODELS = (("MobileNet", "mobilenet"),)


# --- the child: one method, one checkpoint, then its measurements as JSON on stdout -------------


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource  # not Linux: ru_maxrss is KiB on Linux, bytes on macOS

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (MIB if sys.platform == "darwin" else 1024)


def _child(method: str, prefix: str, output: str, output_node: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if method == "engine":
        from tasks.freeze_engine import freeze_checkpoint

        start = time.perf_counter()
        freeze_checkpoint(prefix, [output_node], output)
    else:
        import tensorflow as tf

        if method == "freeze_graph":
            from tensorflow.python.tools import freeze_graph

            start = time.perf_counter()
            freeze_graph.freeze_graph(
                input_graph=None,
                input_saver=None,
                input_binary=True,
                input_checkpoint=prefix,
                output_node_names=output_node,
                restore_op_name=None,
                filename_tensor_name=None,
                output_graph=output,
                clear_devices=True,
                initializer_nodes="",
                input_meta_graph=prefix + ".meta",
            )
        else:
            start = time.perf_counter()
            with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
                saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta", clear_devices=True)
                saver.restore(sess, prefix)
                frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                    sess, graph.as_graph_def(), [output_node]
                )
            Path(output).write_bytes(frozen.SerializeToString())
    seconds = time.perf_counter() - start
    print(json.dumps({"freeze_s": seconds, "peak_rss_mib": _peak_rss_mib()}))


# --- the parent ---------------------------------------------------------------------------------


def build_checkpoint(prefix: Path, widths: tuple[int, ...]) -> int:
    """Saves y = x @ W0 @ W1 ... (random float32 weights) with tf.compat.v1.train.Saver; returns
    the parameter count. Runs in a subprocess so that its memory is returned afterwards."""
    script = f"""
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
widths = {list(widths)!r}
with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, widths[0]], name="x")
    h = x
    for i, w in enumerate(widths):
        v = tf.compat.v1.get_variable(f"layer{{i}}/kernel", [h.shape[1], w],
            initializer=tf.compat.v1.random_uniform_initializer(-0.01, 0.01, seed=i))
        h = tf.matmul(h, v)
    tf.identity(h, name="y")
    saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        saver.save(sess, {str(prefix)!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    return sum(rows * columns for rows, columns in layer_shapes(widths))


def build_real_checkpoint(prefix: Path, kind: str) -> tuple[int, int]:
    """Saves a real architecture (tests/support/real_models.py) in a subprocess; returns its parameter
    count and its largest variable's."""
    script = f"""
import os, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from pathlib import Path
from tests.support.real_models import save_real_model
from tasks.freeze_engine import checkpoint_variables
save_real_model({kind!r}, Path({str(prefix.parent)!r}))
import math
sizes = [math.prod(shape) for name, dtype, shape in checkpoint_variables({str(prefix)!r}) if dtype == "float32"]
print(json.dumps([sum(sizes), max(sizes)]))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, env=env, capture_output=True, text=True)
    parameters, largest = json.loads(result.stdout.strip().splitlines()[-1])
    return parameters, largest


def layer_shapes(widths: tuple[int, ...]) -> list[tuple[int, int]]:
    """The kernel shapes of the chain: the input is as wide as the first layer."""
    return list(zip((widths[0], *widths[:-1]), widths, strict=True))


def freeze_graph_available() -> bool:
    script = (
        "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow.python.tools.freeze_graph') is None)"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == 0


def run_method(method: str, prefix: Path, output: Path, output_node: str = "y") -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--child", method, str(prefix), str(output), output_node],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    process_s = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{method} failed on {prefix}:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    measured["process_s"] = process_s
    measured["output_bytes"] = output.stat().st_size
    output.unlink()  # the frozen graphs are as large as the checkpoint: keep one at a time on disk
    return measured


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models and one repeat: a sanity run")
    parser.add_argument("--repeats", type=int, default=None, help="runs per method (default 3, or 1 with --quick)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build checkpoints (default: a temp dir)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument("--real-only", action="store_true", help="only the real architecture's row")
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "PREFIX", "OUTPUT", "NODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return

    repeats = args.repeats or (1 if args.quick else 3)
    models = () if args.real_only else QUICK_MODELS if args.quick else FULL_MODELS
    real_models = QUICK_REAL_MODELS if args.quick else FULL_REAL_MODELS
    methods = [m for m in METHODS if m != "freeze_graph" or freeze_graph_available()]
    workdir = Path(tempfile.mkdtemp(prefix="freeze-bench-", dir=args.workdir))
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "repeats": repeats,
        "freeze_graph_available": "freeze_graph" in methods,
        "models": {},
    }
    try:
        for name, widths in models:
            prefix = workdir / name / "model"
            prefix.parent.mkdir(parents=True)
            print(f"building {name} checkpoint ...", file=sys.stderr, flush=True)
            params = build_checkpoint(prefix, widths)
            checkpoint_bytes = sum(p.stat().st_size for p in prefix.parent.glob("model.*"))
            model: dict[str, Any] = {
                "parameters": params,
                "largest_variable": max(rows * columns for rows, columns in layer_shapes(widths)),
                "checkpoint_bytes": checkpoint_bytes,
                "methods": {},
            }
            for method in methods:
                print(f"  {method} x{repeats} ...", file=sys.stderr, flush=True)
                runs = [run_method(method, prefix, workdir / "frozen.pb") for _ in range(repeats)]
                model["methods"][method] = {"median": median_of(runs), "runs": runs}
            results["models"][name] = model
            shutil.rmtree(prefix.parent)
        for name, kind in real_models:
            prefix = workdir / name / "model"
            prefix.parent.mkdir(parents=True)
            print(f"building {name} checkpoint (Keras application, TF1 Saver) ...", file=sys.stderr, flush=True)
            params, largest = build_real_checkpoint(prefix, kind)
            model = {
                "parameters": params,
                "largest_variable": largest,
                "checkpoint_bytes": sum(p.stat().st_size for p in prefix.parent.glob("model.*")),
                "real_architecture": kind,
                "methods": {},
            }
            for method in methods:
                print(f"  {method} x{repeats} ...", file=sys.stderr, flush=True)
                runs = [run_method(method, prefix, workdir / "frozen.pb", "probs") for _ in range(repeats)]
                model["methods"][method] = {"median": median_of(runs), "runs": runs}
            results["models"][name] = model
            shutil.rmtree(prefix.parent)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    results["targets"] = check_targets(results)
    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.output}")


def check_targets(results: dict[str, Any]) -> dict[str, Any]:
    """Engine wall <= 0.25x the guide's; engine peak RSS <= 100 MiB on each synthetic model, and the
    larger model's within 1.2x of the smaller's; on the real architecture, wall and peak RSS below the guide's."""
    models = [model for model in results["models"].values() if "real_architecture" not in model]
    real = [model for model in results["models"].values() if "real_architecture" in model]
    if not models:
        return {"real_architecture_below_guide": _real_below_guide(real)}
    engine = [model["methods"]["engine"]["median"] for model in models]
    guide = [model["methods"]["guide"]["median"] for model in models]
    return {
        "wall_at_most_0.25x_guide": all(
            e["freeze_s"] <= 0.25 * g["freeze_s"] for e, g in zip(engine, guide, strict=True)
        ),
        "peak_rss_at_most_100_mib": all(e["peak_rss_mib"] <= 100 for e in engine),
        "larger_rss_within_1.2x_smaller": engine[-1]["peak_rss_mib"] <= 1.2 * engine[0]["peak_rss_mib"],
        "real_architecture_below_guide": _real_below_guide(real),
    }


def _real_below_guide(real: list[dict[str, Any]]) -> bool:
    return all(
        m["methods"]["engine"]["median"]["freeze_s"] < m["methods"]["guide"]["median"]["freeze_s"]
        and m["methods"]["engine"]["median"]["peak_rss_mib"] < m["methods"]["guide"]["median"]["peak_rss_mib"]
        for m in real
    )


def print_table(results: dict[str, Any]) -> None:
    header = (
        f"{'model':<9} {'method':<13} {'freeze s':>9} {'process s':>10} {'peak RSS MiB':>13} "
        f"{'wall vs guide':>14} {'RSS vs guide':>13}"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    for name, model in results["models"].items():
        guide = model["methods"]["guide"]["median"]
        for method in METHODS:
            if method not in model["methods"]:
                print(f"{name:<9} {method:<13} {'(not in this TensorFlow)':>48}")
                continue
            m = model["methods"][method]["median"]
            print(
                f"{name:<9} {method:<13} {m['freeze_s']:>9.2f} {m['process_s']:>10.2f} {m['peak_rss_mib']:>13.0f} "
                f"{m['freeze_s'] / guide['freeze_s']:>13.3f}x {m['peak_rss_mib'] / guide['peak_rss_mib']:>12.3f}x"
            )
        print(
            f"{'':<9} ({model['parameters'] / 1e6:.1f}M parameters, largest variable "
            f"{model['largest_variable'] / 1e6:.1f}M, checkpoint {model['checkpoint_bytes'] / MIB:.0f} MiB"
            + (f", Keras {model['real_architecture']}" if "real_architecture" in model else "") + ")"
        )
    print("\ntargets: " + ", ".join(f"{key}: {'met' if ok else 'MISSED'}" for key, ok in results["targets"].items()))


if __name__ == "__main__":
    main()
