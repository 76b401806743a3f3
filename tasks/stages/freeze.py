"""Stage 3, freeze: a checkpoint into one self-sufficient GraphDef ``.pb``
(the work is :func:`tasks.tf.freezing.write_frozen_graph`)."""

from __future__ import annotations


from tasks.core.records import Checkpoint, FrozenGraph
from tasks.stages.cache_policy import stage_task
from tasks.core.names import FreezeEngine
from tasks.tf.freezing import write_frozen_graph


@stage_task("freeze")
def freeze(checkpoint: Checkpoint, output_nodes: list[str], engine: FreezeEngine = "stream",
           fold_batch_norm: bool = False) -> FrozenGraph:
    return write_frozen_graph(checkpoint, output_nodes, engine=engine, fold_batch_norm=fold_batch_norm)
