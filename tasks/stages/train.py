"""Stage 1, train: run an entrypoint and hand the trained model on as an object-based checkpoint."""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from prefect import task

from tasks.core import workspace
from tasks.core.cache_keys import stage_token
from tasks.stages.cache_policy import stage_policy
from tasks.core.errors import EntrypointError, ParameterError
from tasks.tf.entrypoints import (
    TrainContext,
    build_model,
    entrypoint_digest,
    model_interface,
    model_variables,
    variable_name,
)
from tasks.core.records import Artifact, TrainedModel, VariableInfo

STAGE_MODULES = ("tasks.stages.train", "tasks.tf.entrypoints", "tasks.core.records")
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
        STAGE_MODULES,
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


@task(
    name="train",
    cache_policy=stage_policy("train", *STAGE_MODULES, ignore=("progress_key",)),
    result_serializer="json",
    persist_result=True,
    cache_result_in_memory=False,
)
def train(
    entrypoint: str, epochs: int, learning_rate: float, seed: int, options: dict[str, Any],
    entrypoint_digest: str,
    progress_key: Optional[str] = None,
) -> TrainedModel:
    """Train; ``entrypoint_digest`` is passed only so that editing the user's code changes the cache key.

    Progress shows in the UI as a progress artifact (updated about 20 times) and the loss in the log.
    """
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from prefect.logging import get_run_logger

    run_logger = get_run_logger()
    every = max(1, epochs // 20)
    progress_id = create_progress_artifact(progress=0.0, key=progress_key, description=f"Training {entrypoint}")

    def on_epoch(epoch: int, loss: float) -> None:
        if epoch % every == 0 or epoch == epochs - 1:
            run_logger.info("epoch %d/%d loss %.6g", epoch + 1, epochs, loss)
            update_progress_artifact(progress_id, progress=100.0 * (epoch + 1) / max(epochs, 1))

    record = train_model(entrypoint, epochs=epochs, learning_rate=learning_rate, seed=seed, options=options,
                         on_epoch=on_epoch)
    update_progress_artifact(progress_id, progress=100.0)
    if record.entrypoint_digest != entrypoint_digest:
        raise EntrypointError(f"entrypoint {entrypoint!r} changed on disk while training; run again")
    return record
