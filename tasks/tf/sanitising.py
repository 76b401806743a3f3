"""Sanitising a TF1 checkpoint: one whose graph still holds training machinery becomes one whose graph
serves inference, before freeze and export read it.

The rewrite itself is :mod:`tasks.freeze_engine.sanitise`; like the stream freezer it needs no
TensorFlow runtime, and it lives beside :mod:`tasks.tf.freezing` because it makes the checkpoint record
freezing and export read. :func:`sanitise_checkpoint` writes
the rewritten ``.meta`` into the workspace beside links to the checkpoint's unchanged index and data
files, and returns a checkpoint record that lists the rewrites. A graph with nothing to rewrite
(already an inference graph, or a TF2 checkpoint) comes back as the same record, so freeze and
export keep their cache keys.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

from tasks.core import workspace
from tasks.core.cache_keys import stage_token
from tasks.core.errors import CheckpointError
from tasks.core.records import Artifact, Checkpoint


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link costs nothing; across file systems the data is copied instead."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def sanitise_checkpoint(checkpoint: Checkpoint, output_nodes: Optional[Sequence[str]] = None) -> Checkpoint:
    """The inference version of ``checkpoint`` (itself when its graph needs no rewrite)."""
    from tasks.freeze_engine import protos
    from tasks.freeze_engine.sanitise import sanitise_meta_graph

    if checkpoint.format != "tf1":
        return checkpoint
    checkpoint.artifact.verify()
    outputs = [n.split(":")[0] for n in (output_nodes or [])]
    if not outputs:
        assert checkpoint.interface is not None, "describe_checkpoint fills in a TF1 checkpoint's interface"
        outputs = [checkpoint.interface.output.name]
    meta_path = checkpoint.artifact.path(checkpoint.prefix + ".meta")
    try:
        meta = protos.meta_graph_pb2.MetaGraphDef.FromString(meta_path.read_bytes())
    except Exception as exc:  # DecodeError and friends: the file is not a MetaGraphDef
        raise CheckpointError(f"{meta_path} is not a MetaGraphDef ({exc}); is the file truncated?") from exc
    result = sanitise_meta_graph(meta, outputs)
    if not result.changed:
        return checkpoint
    token = stage_token("sanitise", __name__, {"checkpoint": checkpoint, "outputs": outputs})
    final = workspace.stage_dir("sanitise", token)
    with workspace.building(final) as scratch:
        for entry in checkpoint.artifact.files:
            name = Path(entry.path).name
            if name == checkpoint.prefix + ".meta" or name == "checkpoint":
                continue
            _link_or_copy(checkpoint.artifact.path(entry.path), scratch / name)
        (scratch / (checkpoint.prefix + ".meta")).write_bytes(result.meta.SerializeToString(deterministic=True))
        (scratch / "checkpoint").write_text(f'model_checkpoint_path: "{checkpoint.prefix}"\n')
    return checkpoint.model_copy(update={"artifact": Artifact.of(final), "rewrites": tuple(result.rewrites)})
