"""The guide's steps in one process, with no Prefect: the baseline ``benchmarks/run_cost.py`` measures
``freezeflow run`` against.

Build the guide's model ``y = m*x + b`` and fit it by gradient descent (200 epochs, as
``freezeflow run`` does by default), save the TF1 Saver checkpoint, restore it in a new graph, freeze it
(``convert_variables_to_constants``), export a SavedModel with a ``serving_default`` signature, load
that SavedModel and predict at x = 2, 4, 6. Prints the predictions as JSON.

    python benchmarks/guide_baseline.py OUTPUT_FOLDER
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

EPOCHS = 200
LEARNING_RATE = 0.3


def main(folder: Path) -> dict[str, list[float]]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    folder.mkdir(parents=True, exist_ok=True)
    prefix = str(folder / "ckpt" / "model")

    # 1. build and train, then the guide's four checkpoint files
    rng = np.random.default_rng(0)
    xs = rng.uniform(-2, 2, 256).astype(np.float32)
    ys = (0.5 * xs + 1.0).astype(np.float32)
    with tf.Graph().as_default() as graph:
        x = v1.placeholder(tf.float32, shape=[None], name="x")
        target = v1.placeholder(tf.float32, shape=[None], name="target")
        m = v1.Variable(0.0, name="m")
        b = v1.Variable(0.0, name="b")
        y = tf.identity(m * x + b, name="y")
        step = v1.train.GradientDescentOptimizer(LEARNING_RATE).minimize(tf.reduce_mean(tf.square(y - target)))
        saver = v1.train.Saver([m, b])
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            for _ in range(EPOCHS):
                session.run(step, {x: xs, target: ys})
            saver.save(session, prefix)

    # 2. restore and 3. freeze
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        restorer = v1.train.import_meta_graph(prefix + ".meta", clear_devices=True)
        restorer.restore(session, prefix)
        frozen = v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["y"])
        frozen = v1.graph_util.extract_sub_graph(frozen, ["y"])
    (folder / "frozen_graph.pb").write_bytes(frozen.SerializeToString())

    # 4. export a SavedModel from the checkpoint
    export_dir = folder / "saved_model" / "1"
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        restorer = v1.train.import_meta_graph(prefix + ".meta", clear_devices=True)
        restorer.restore(session, prefix)
        builder = v1.saved_model.Builder(str(export_dir))
        signature = v1.saved_model.predict_signature_def(
            inputs={"inputs": graph.get_tensor_by_name("x:0")}, outputs={"outputs": graph.get_tensor_by_name("y:0")})
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()

    # 5. load it and predict, and the frozen graph too
    predictions: dict[str, list[float]] = {}
    loaded = tf.saved_model.load(str(export_dir))
    serve = loaded.signatures["serving_default"]
    predictions["saved_model"] = [float(v) for v in serve(inputs=tf.constant([2.0, 4.0, 6.0]))["outputs"].numpy()]
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        tf.graph_util.import_graph_def(frozen, name="")
        predictions["frozen_graph"] = [float(v) for v in session.run("y:0", {"x:0": [2.0, 4.0, 6.0]})]
    return predictions


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
