"""The closed sets of values a parameter may take, and the limits it is checked against: one definition each.

The flows' parameter models (``flows/params.py``), the records, the stages and the CLI all import these,
so adding an engine or a checkpoint format is a change in one place. Only ``typing`` is imported here:
the CLI reads these while building ``--help``.
"""

from __future__ import annotations

from typing import Literal, get_args

CheckpointFormat = Literal["tf1", "tf2"]
"""tf1: a TF1 Saver checkpoint with its ``.meta`` graph (the guide's); tf2: an object-based checkpoint."""

FreezeEngine = Literal["stream", "tf"]
"""stream: freezeflow's engine (no TensorFlow runtime, flat memory); tf: TensorFlow's own freezer."""

ModelFormat = Literal["checkpoint", "frozen_graph", "saved_model"]
"""The three forms of one model that validation runs side by side."""

ReferenceSource = Literal["inline", "file", "generated"]
"""Where validation's reference batch comes from: instances given inline, a .npy/.npz/.json file, or
generated from the input signature with a seed."""

PROTOBUF_LIMIT = 2**31 - 1
"""A serialized protobuf message (a GraphDef) may not exceed 2 GiB - 1 bytes."""


def choices(literal: object) -> tuple[str, ...]:
    """The values a ``Literal`` type allows, in order: ``choices(FreezeEngine) == ("stream", "tf")``."""
    return tuple(get_args(literal))
