"""The freeze engine: TF1 Saver checkpoints into frozen GraphDef files, without TensorFlow's runtime.

It is also the one reader of checkpoints and graph files (reader.py): the pipeline and
`freezeflow inspect` ask it which files, variables, inputs and likely outputs a checkpoint has.

Freezing is a rewrite of one protobuf plus a copy of bytes, so this package does exactly that: it
reads the MetaGraphDef (protos.py loads TensorFlow's message classes without its runtime), keeps
what the outputs need (subgraph.py), finds which checkpoint tensor each variable is restored from
(restore_map.py) and where its bytes lie (bundle.py over sstable.py), rewrites variables into
constants (rewrite.py), and streams the GraphDef to disk node by node, each tensor's bytes copied
from the data files in bounded chunks and checked against their CRC32C (writer.py, tensor_data.py).
Peak memory is that of the graph's structure, not of its weights.
"""

from tasks.freeze_engine.engine import PROTOBUF_LIMIT, FreezeStats, freeze_checkpoint
from tasks.freeze_engine.files import resolve_checkpoint_prefix
from tasks.freeze_engine.reader import checkpoint_variables, list_output_candidates

__all__ = [
    "PROTOBUF_LIMIT",
    "FreezeStats",
    "checkpoint_variables",
    "freeze_checkpoint",
    "list_output_candidates",
    "resolve_checkpoint_prefix",
]
