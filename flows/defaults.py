"""The flows' default parameter values, as plain constants: one place for each.

:mod:`flows.params` builds its Pydantic models (the Prefect UI's form) from these, the flows use them as
their signatures' defaults and the CLI as its options' defaults. Only the literal types and the
entrypoint constant are imported here: building the Pydantic models would cost ``freezeflow --help``
about a second, so the CLI reads this module instead.
"""

from __future__ import annotations

from tasks.core import names
from tasks.tf.entrypoints import DEFAULT_ENTRYPOINT

DESTINATION = "published"
TRAINED_MODEL_NAME = "linear"  # publish_model: the guide's linear model
CONVERTED_MODEL_NAME = "model"  # convert_checkpoint: a checkpoint of unknown origin
CHECKPOINT_FORMAT: names.CheckpointFormat = "tf1"
FREEZE_ENGINE: names.FreezeEngine = "stream"

ENTRYPOINT = DEFAULT_ENTRYPOINT
EPOCHS = 200
LEARNING_RATE = 0.05
SEED = 0

# publish_model validates the guide's model at the guide's points; convert_checkpoint (and any other
# model) on a batch generated from the input signature.
GUIDE_REFERENCE_INPUTS = (2.0, 4.0, 6.0)

SMOKE_DESTINATION = "published-smoke"
SMOKE_EPOCHS = 150  # the guide's answers need about 100
