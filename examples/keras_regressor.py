"""Bring your own model, Keras flavour: a small regressor of y = 2*x0 - x1 + 0.5 for freezeflow.

    freezeflow run --entrypoint examples.keras_regressor:build --model-name keras-regressor \
        # reference inputs must then be 2-vectors: see README
"""

from __future__ import annotations

from typing import Any


def build(ctx: Any) -> Any:
    """Build a Keras model with one known input; fit it for ``ctx.epochs`` epochs (0: build only)."""
    import keras
    import numpy as np

    inputs = keras.Input(shape=(2,), name="x")
    outputs = keras.layers.Dense(1, name="dense")(inputs)
    model = keras.Model(inputs, outputs, name="regressor")
    model.input_name = "x"
    model.output_name = "y"
    if ctx.epochs:
        rng = np.random.default_rng(ctx.seed)
        xs = rng.uniform(-1, 1, size=(128, 2)).astype("float32")
        ys = (2 * xs[:, :1] - xs[:, 1:] + 0.5).astype("float32")
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=ctx.learning_rate), loss="mse")
        model.fit(xs, ys, epochs=ctx.epochs, batch_size=32, verbose=0, shuffle=False,
                  callbacks=[ctx.keras_callback()])
    return model
