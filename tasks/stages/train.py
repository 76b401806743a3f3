"""Stage 1, train: run an entrypoint and hand the trained model on as an object-based checkpoint
(the TensorFlow work is :func:`tasks.tf.training.train_model`)."""

from __future__ import annotations

import time
from typing import Any, Optional


from tasks.core.errors import EntrypointError
from tasks.core.records import TrainedModel
from tasks.stages.cache_policy import stage_task
from tasks.tf.training import train_model


PROGRESS_INTERVAL = 1.0  # seconds between updates of the training progress artifact


@stage_task("train", ignore=("progress_key",))
def train(
    entrypoint: str, epochs: int, learning_rate: float, seed: int, options: dict[str, Any],
    entrypoint_digest: str,
    progress_key: Optional[str] = None,
) -> TrainedModel:
    """Train; ``entrypoint_digest`` is passed only so that editing the user's code changes the cache key.

    Progress shows in the UI as a progress artifact (updated about 20 times, at most once per
    PROGRESS_INTERVAL: each update is an API call, and 20 of them took longer than the guide's training)
    and the loss in the log.
    """
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from prefect.logging import get_run_logger

    run_logger = get_run_logger()
    every = max(1, epochs // 20)
    progress_id = create_progress_artifact(progress=0.0, key=progress_key, description=f"Training {entrypoint}")
    last_update = [time.monotonic()]

    def on_epoch(epoch: int, loss: float) -> None:
        if epoch % every == 0 or epoch == epochs - 1:
            run_logger.info("epoch %d/%d loss %.6g", epoch + 1, epochs, loss)
            if time.monotonic() - last_update[0] >= PROGRESS_INTERVAL:
                update_progress_artifact(progress_id, progress=100.0 * (epoch + 1) / max(epochs, 1))
                last_update[0] = time.monotonic()

    record = train_model(entrypoint, epochs=epochs, learning_rate=learning_rate, seed=seed, options=options,
                         on_epoch=on_epoch)
    update_progress_artifact(progress_id, progress=100.0)
    if record.entrypoint_digest != entrypoint_digest:
        raise EntrypointError(f"entrypoint {entrypoint!r} changed on disk while training; run again")
    return record
