"""The guide's TF1 checkpoint, built by the tests that need it."""

from __future__ import annotations

from pathlib import Path


def write_guide_checkpoint(folder: Path, m: float = 0.5, b: float = 1.0) -> Path:
    """The guide's TF1 files: ``y = m*x + b`` with variables m, b, placeholder x, output y; returns the prefix."""
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, shape=[None], name="x")
        m_var = tf.compat.v1.Variable(m, name="m")
        b_var = tf.compat.v1.Variable(b, name="b")
        tf.identity(m_var * x + b_var, name="y")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(folder / "model"))
    return folder / "model"


def write_sweep(root: Path, count: int, start: int = 0) -> dict[str, tuple[float, float]]:
    """``count`` guide checkpoints in ``root/run-NN`` with their own m and b (a small sweep); returns
    each folder's model name (its folder name) with its (m, b)."""
    models = {}
    for i in range(start, start + count):
        m, b = 0.5 + i, 1.0 - 0.25 * i
        write_guide_checkpoint(root / f"run-{i:02d}", m=m, b=b)
        models[f"run-{i:02d}"] = (m, b)
    return models
