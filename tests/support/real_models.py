"""Real architectures from Keras's own layers and application models, saved as TF1 Saver checkpoints.

Each builder calls the Keras model inside a ``tf.Graph`` (``training=False``, or ``training=True``
for a graph that still holds its training machinery), gives every weight a seeded value and the
batch-normalisation layers non-trivial moving statistics from a calibration pass, and saves the
graph's variables with ``tf.compat.v1.train.Saver``. The tests' models are small (at most a few
hundred thousand parameters) so they stay fast; ResNet50 is for the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

OUTPUT = "probs"
INPUT = "x"


@dataclass(frozen=True)
class RealModel:
    """A saved checkpoint and what a test needs to feed it."""

    prefix: Path
    input_name: str
    output_name: str
    sample: np.ndarray


def mobilenet() -> Any:
    """MobileNet v1 (depthwise-separable convolutions), width 0.25, on 32×32 images, 10 classes."""
    import keras

    return keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=10)


def resnet() -> Any:
    """A residual network with batch normalisation: stem, two residual blocks (one projecting), head."""
    import keras
    from keras import layers

    inputs = keras.Input((16, 16, 3))
    h = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    h = layers.BatchNormalization(name="stem_bn")(h)
    h = layers.ReLU(name="stem_relu")(h)
    for block, (width, stride) in enumerate(((8, 1), (16, 2))):
        shortcut = h
        y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"b{block}_conv1")(h)
        y = layers.BatchNormalization(name=f"b{block}_bn1")(y)
        y = layers.ReLU(name=f"b{block}_relu1")(y)
        y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"b{block}_conv2")(y)
        y = layers.BatchNormalization(name=f"b{block}_bn2")(y)
        if stride != 1 or shortcut.shape[-1] != width:
            shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False, name=f"b{block}_proj")(shortcut)
            shortcut = layers.BatchNormalization(name=f"b{block}_proj_bn")(shortcut)
        h = layers.ReLU(name=f"b{block}_out")(layers.Add(name=f"b{block}_add")([y, shortcut]))
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    h = layers.Dropout(0.5, name="dropout")(h)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(h)
    return keras.Model(inputs, outputs, name="resnet_small")


def text_lstm() -> Any:
    """Embedding → LSTM → dense softmax over 5 classes: a text classifier on token ids (vocabulary 200)."""
    import keras
    from keras import layers

    inputs = keras.Input((12,), dtype="int32")
    h = layers.Embedding(200, 16, name="embedding")(inputs)
    h = layers.LSTM(16, name="lstm")(h)
    outputs = layers.Dense(5, activation="softmax", name="predictions")(h)
    return keras.Model(inputs, outputs, name="text_lstm")


def sample_input(kind: str, batch: int = 2, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "text_lstm":
        return rng.integers(0, 200, size=(batch, 12), dtype=np.int32)
    size = {"mobilenet": 32, "resnet50": 64}.get(kind, 16)
    return rng.uniform(-1.0, 1.0, size=(batch, size, size, 3)).astype(np.float32)


BUILDERS: dict[str, Callable[[], Any]] = {"mobilenet": mobilenet, "resnet": resnet, "text_lstm": text_lstm}


def seeded_weights(kind: str, seed: int = 0) -> list[np.ndarray]:
    """The model's weights, seeded, with batch-norm scale/offset random and moving statistics set by
    one calibration pass in training mode (momentum 0: the moving statistics become the batch's)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = BUILDERS[kind]()
    rng = np.random.default_rng(seed)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:
        layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
        layer.beta.assign(rng.normal(0.0, 0.2, layer.beta.shape).astype("float32"))
        layer.momentum = 0.0
    if bns:
        model(sample_input(kind, batch=16, seed=seed + 100), training=True)
    if kind == "text_lstm":  # Keras's small default embeddings give near-uniform class scores: spread them
        embedding = model.get_layer("embedding")
        embedding.embeddings.assign(rng.normal(0.0, 1.0, embedding.embeddings.shape).astype("float32"))
        dense = model.get_layer("predictions")
        dense.kernel.assign(rng.normal(0.0, 1.0, dense.kernel.shape).astype("float32"))
    return [np.asarray(w) for w in model.get_weights()]


def save_real_model(kind: str, folder: Path, *, training: bool = False, seed: int = 0,
                    optimizer: bool = False, summaries: bool = False) -> RealModel:
    """Build ``kind`` in a TF1 graph, load the seeded weights, save a Saver checkpoint (prefix ``model``).

    ``training`` calls the model with ``training=True`` (batch norm on batch statistics, dropout on);
    ``optimizer`` adds labels, a loss and Adam (slot variables in the checkpoint); ``summaries`` adds
    summary ops, as a training script would."""
    import tensorflow as tf

    weights = seeded_weights(kind, seed)
    sample = sample_input(kind)
    folder.mkdir(parents=True, exist_ok=True)
    with tf.Graph().as_default() as graph:
        model = BUILDERS[kind]()
        dtype = tf.int32 if kind == "text_lstm" else tf.float32
        x = tf.compat.v1.placeholder(dtype, (None, *sample.shape[1:]), name=INPUT)
        y = tf.identity(model(x, training=training), name=OUTPUT)
        variables = [w.value for w in model.weights]
        if optimizer:
            labels = tf.compat.v1.placeholder(tf.int32, [None], name="labels")
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, y))
            if summaries:
                tf.compat.v1.summary.scalar("loss", loss)
                tf.compat.v1.summary.histogram("probs", y)
            tf.compat.v1.train.AdamOptimizer(1e-3).minimize(
                loss, var_list=[v for v in variables if v.trainable], name="train_op")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for variable, value in zip(variables, weights, strict=True):
                variable.load(value, session)
            saver.save(session, str(folder / "model"))
    return RealModel(prefix=folder / "model", input_name=INPUT, output_name=OUTPUT, sample=sample)


def tf_unfrozen(model: RealModel, batch: np.ndarray) -> np.ndarray:
    """The checkpoint restored by TensorFlow and run as it is (a learning phase at its default)."""
    import tensorflow as tf

    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        saver = tf.compat.v1.train.import_meta_graph(str(model.prefix) + ".meta", clear_devices=True)
        saver.restore(session, str(model.prefix))
        return session.run(model.output_name + ":0", {model.input_name + ":0": batch})


def tf_frozen_reference(model: RealModel, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TensorFlow's own answers: the checkpoint restored and run, and its own frozen graph run."""
    import tensorflow as tf

    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        saver = tf.compat.v1.train.import_meta_graph(str(model.prefix) + ".meta", clear_devices=True)
        saver.restore(session, str(model.prefix))
        unfrozen = session.run(model.output_name + ":0", {model.input_name + ":0": batch})
        frozen_def = tf.compat.v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), [model.output_name])
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        tf.import_graph_def(frozen_def, name="")
        frozen = session.run(model.output_name + ":0", {model.input_name + ":0": batch})
    return unfrozen, frozen


def resnet50() -> Any:
    """Keras's own ResNet50 (25.6M parameters, 1000 classes) on 64×64 images: the benchmark's and the
    tolerance measurement's real-size classifier."""
    import keras

    return keras.applications.ResNet50(input_shape=(64, 64, 3), weights=None, classes=1000)


BUILDERS["resnet50"] = resnet50


def save_learning_phase_model(folder: Path, seed: int = 0) -> RealModel:
    """A TF1-style training graph: a ``keras_learning_phase`` placeholder (default False) chooses, in a
    ``tf.cond``, between batch norm and dropout in training mode and in inference mode."""
    import keras
    import tensorflow as tf
    from keras import layers

    sample = sample_input("resnet")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with tf.Graph().as_default() as graph:
        keras.utils.set_random_seed(seed)
        x = tf.compat.v1.placeholder(tf.float32, (None, *sample.shape[1:]), name=INPUT)
        phase = tf.compat.v1.placeholder_with_default(False, [], name="keras_learning_phase")
        conv = layers.Conv2D(8, 3, padding="same", name="conv")
        bn = layers.BatchNormalization(name="bn")
        drop = layers.Dropout(0.5, name="dropout")
        dense = layers.Dense(10, activation="softmax", name="predictions")
        h = conv(x)
        bn.build(h.shape)
        h = tf.cond(phase, lambda: bn(h, training=True), lambda: bn(h, training=False))
        h = tf.reduce_mean(tf.nn.relu(h), axis=[1, 2])
        h = tf.cond(phase, lambda: drop(h, training=True), lambda: drop(h, training=False))
        tf.identity(dense(h), name=OUTPUT)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            for variable in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance):
                low = 0.5 if variable is bn.moving_variance or variable is bn.gamma else -0.5
                variable.value.load(rng.uniform(low, low + 1.0, variable.shape).astype("float32"), session)
            saver.save(session, str(folder / "model"))
    return RealModel(prefix=folder / "model", input_name=INPUT, output_name=OUTPUT, sample=sample)
