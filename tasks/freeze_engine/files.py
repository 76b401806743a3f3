"""Where a TF1 Saver checkpoint's files are: `PREFIX.meta`, `PREFIX.index`, `PREFIX.data-K-of-N`,
starting from what a user passes (a prefix, one of those files, or a directory with a `checkpoint`
state file)."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import CheckpointError, UnsupportedGraphError

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
    """The checkpoint prefix that `path` names: a directory stands for the checkpoint its `checkpoint`
    state file names (or its only `.index`), `model.index`, `model.meta` or a data file for `model`.

    This is the one place that answers the question, for the freeze engine and the pipeline alike.
    """
    given = Path(path).expanduser()
    if given.is_dir():
        state = given / "checkpoint"
        match = _STATE_PATH.search(state.read_text(encoding="utf-8", errors="replace")) if state.is_file() else None
        if match is not None:
            # The value is a C-escaped text-format string.
            latest = Path(codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode("utf-8"))
            if not latest.is_absolute():
                return given / latest
            # A copied or moved folder keeps a state file naming the old absolute path: the
            # checkpoint of that name inside this folder is the one the user means.
            local = given / latest.name
            return local if Path(f"{local}.index").is_file() else latest
        indexes = sorted(given.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        if not indexes:
            raise CheckpointError(f"checkpoint folder {given} holds no .index file; pass the checkpoint's prefix")
        raise CheckpointError(
            f"checkpoint folder {given} holds {len(indexes)} checkpoints and no 'checkpoint' file naming one; "
            f"pass a prefix such as {indexes[-1].with_suffix('')}"
        )
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
