"""Bring your own model, tf.Module flavour: a two-layer network on 3 features, trained with GradientTape."""

from __future__ import annotations

from typing import Any


def build(ctx: Any) -> Any:
    import numpy as np
    import tensorflow as tf

    class TwoLayer(tf.Module):
        input_name = "features"
        output_name = "score"

        def __init__(self) -> None:
            super().__init__(name="two_layer")
            init = tf.random.stateless_normal
            self.w1 = tf.Variable(init([3, 4], seed=[ctx.seed, 1]) * 0.5, name="w1")
            self.b1 = tf.Variable(tf.zeros([4]), name="b1")
            self.w2 = tf.Variable(init([4, 1], seed=[ctx.seed, 2]) * 0.5, name="w2")
            self.b2 = tf.Variable(tf.zeros([1]), name="b2")

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="features")])
        def __call__(self, x: Any) -> Any:
            hidden = tf.nn.relu(tf.matmul(x, self.w1) + self.b1)
            return tf.matmul(hidden, self.w2) + self.b2

    model = TwoLayer()
    rng = np.random.default_rng(ctx.seed)
    xs = tf.constant(rng.uniform(-1, 1, size=(64, 3)).astype("float32"))
    ys = tf.reduce_sum(xs, axis=1, keepdims=True)
    optimizer = tf.keras.optimizers.SGD(learning_rate=ctx.learning_rate)
    for epoch in range(ctx.epochs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(xs) - ys))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        ctx.log_loss(epoch, float(loss))
    return model
