"""Where a TF1 Saver checkpoint's files are: `PREFIX.meta`, `PREFIX.index`, `PREFIX.data-K-of-N`,
starting from what a user passes (a prefix, one of those files, or a directory with a `checkpoint`
state file)."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import CheckpointError, UnsupportedGraphError

_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")
# `model_checkpoint_path: "..."` in the text-format CheckpointState that Saver.save keeps current.
_STATE_PATH = re.compile(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"\s*$', re.MULTILINE)


@dataclass(frozen=True)
class CheckpointFiles:
    """The files of one checkpoint; `index` is known to exist, and `meta` unless it was not needed."""

    prefix: Path
    meta: Path
    index: Path

    def data_file(self, shard: int, num_shards: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{num_shards:05d}")


def resolve_checkpoint_prefix(path: str | Path) -> Path:
    """The checkpoint prefix that `path` names: a directory holding a `checkpoint` state file
    stands for its latest checkpoint, `model.index` or `model.meta` for `model`."""
    given = Path(path)
    if given.is_dir():
        state = given / "checkpoint"
        if not state.is_file():
            raise CheckpointError(
                f"{given} is a directory without a 'checkpoint' state file: pass a checkpoint "
                f"prefix such as {given / 'model'}"
            )
        match = _STATE_PATH.search(state.read_text(encoding="utf-8", errors="replace"))
        if match is None:
            raise CheckpointError(f"{state} names no model_checkpoint_path: pass a checkpoint prefix")
        # The value is a C-escaped text-format string.
        latest = Path(codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode("utf-8"))
        return latest if latest.is_absolute() else given / latest
    for suffix in (".meta", ".index"):
        if given.name.endswith(suffix):
            return given.with_name(given.name[: -len(suffix)])
    if _DATA_SUFFIX.search(given.name):
        return given.with_name(_DATA_SUFFIX.sub("", given.name))
    return given


def locate_checkpoint(path: str | Path, *, need_meta: bool = True) -> CheckpointFiles:
    """The files of the checkpoint `path` names; raises if the index (or, when `need_meta`, the
    graph) is missing."""
    prefix = resolve_checkpoint_prefix(path)
    meta = Path(f"{prefix}.meta")
    index = Path(f"{prefix}.index")
    if not index.is_file():
        # A V1 checkpoint is the prefix itself, or PREFIX-00000-of-00001 when sharded.
        if prefix.is_file() or any(prefix.parent.glob(f"{prefix.name}-?????-of-?????")):
            raise UnsupportedGraphError(
                f"{prefix} is a V1-format checkpoint, which the freeze engine does not read: "
                "re-save it with tf.compat.v1.train.Saver() (V2, the default)"
            )
        raise CheckpointError(
            f"checkpoint index {index} is missing: pass the prefix of a checkpoint written by "
            "tf.compat.v1.train.Saver (the path before .index)"
        )
    if need_meta and not meta.is_file():
        raise CheckpointError(
            f"checkpoint graph {meta} is missing: the freeze engine needs the MetaGraphDef that "
            "Saver.save writes next to the index (write_meta_graph=True)"
        )
    return CheckpointFiles(prefix=prefix, meta=meta, index=index)
