"""Training with TensorFlow: run an entrypoint and write the trained model as an object-based checkpoint."""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Optional

from tasks.core import workspace
from tasks.core.cache_keys import stage_token
from tasks.core.errors import EntrypointError, ParameterError, TrainingDiverged
from tasks.core.records import Artifact, TrainedModel, VariableInfo
from tasks.tf.entrypoints import (
    TrainContext,
    build_model,
    entrypoint_digest,
    model_interface,
    model_variables,
    variable_name,
)


PREFIX = "trained"
logger = logging.getLogger("freezeflow.train")


def train_model(
    entrypoint: str,
    *,
    epochs: int,
    learning_rate: float,
    seed: int,
    options: Optional[dict[str, Any]] = None,
    on_epoch: Optional[Callable[[int, float], None]] = None,
) -> TrainedModel:
    """Train the model an entrypoint builds and write it as a TF2 checkpoint in the workspace."""
    import tensorflow as tf

    if epochs < 0:
        raise ParameterError(f"epochs must be 0 or more, got {epochs}")
    digest = entrypoint_digest(entrypoint)
    token = stage_token(
        "train",
        __name__,
        {"entrypoint": entrypoint, "digest": digest, "epochs": epochs, "lr": learning_rate, "seed": seed,
         "options": options or {}},
    )
    tf.keras.utils.set_random_seed(seed)  # seeds Python, NumPy and TensorFlow: reproducible runs
    ctx = TrainContext(epochs=epochs, learning_rate=learning_rate, seed=seed, options=dict(options or {}),
                       on_epoch=on_epoch)
    model = build_model(entrypoint, ctx)
    if epochs and len(ctx.losses) == 0:
        logger.warning("entrypoint %s reported no loss; call ctx.log_loss(epoch, loss) to see it in the report",
                       entrypoint)
    interface = model_interface(model, entrypoint)
    variables = model_variables(model)
    if not variables:
        raise EntrypointError(f"entrypoint {entrypoint!r} returned a model without variables; nothing to freeze")
    require_finite(entrypoint, ctx.losses, {variable_name(v): v.numpy() for v in variables}, learning_rate)
    final = workspace.stage_dir("train", token)
    with workspace.building(final) as scratch:
        tf.train.Checkpoint(model=model).write(str(scratch / PREFIX))
    artifact = Artifact.of(final)
    return TrainedModel(
        artifact=artifact,
        prefix=PREFIX,
        entrypoint=entrypoint,
        entrypoint_digest=digest,
        interface=interface,
        variables=tuple(
            VariableInfo(name=variable_name(v), dtype=tf.as_dtype(v.dtype).name, shape=tuple(int(d) for d in v.shape))
            for v in variables
        ),
        losses=tuple(ctx.losses),
        tensorflow_version=tf.__version__,
    )


def require_finite(entrypoint: str, losses: list[float], values: dict[str, Any], learning_rate: float) -> None:
    """A diverged training is the train stage's failure, not a puzzle for validation: every reported loss and
    every variable must be a finite number."""
    import numpy as np

    advice = f"lower the learning rate (now {learning_rate:g}) or check the training data"
    for epoch, loss in enumerate(losses):
        if not math.isfinite(loss):
            raise TrainingDiverged(f"training with {entrypoint!r} diverged: the loss is {loss} at epoch {epoch + 1} "
                                   f"of {len(losses)}; {advice}")
    for name, value in values.items():
        array = np.asarray(value)
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            raise TrainingDiverged(f"training with {entrypoint!r} left variable {name!r} holding nan or inf; {advice}")
