"""The fuzz targets: each parser that reads bytes a user (or a network client) hands us, and the errors it may raise.

A target takes one input (bytes) and runs it through a parser the way freezeflow runs a file or a
request body. Each parser may raise only the errors it documents; anything else escaping a target
is a bug (a crash, for the fuzzer). ``TARGETS`` maps a name to the target and those errors; the
same table drives the atheris runner (``python -m fuzz.run``), the short runs in the test suite and
the regression tests over the crashing inputs kept in ``fuzz/crashes/``.

    sstable   the checkpoint index read as a LevelDB table   may raise TableFormatError (its documented error)
              (an input not ending in the table magic is
              wrapped as one block with valid CRCs)
    bundle    the checkpoint index read as a tensor bundle,  may raise FreezeflowError (CheckpointError,
              then frozen with the guide's graph and data      UnsupportedGraphError, OutputNodeError, ...)
    meta      the checkpoint's .meta graph, listed and       may raise FreezeflowError
              frozen with the guide's index and data
    rest      a TF Serving REST predict body against a few    may raise RequestError (answered as 400 JSON)
              signatures
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SEEDS = Path(__file__).resolve().parent / "seeds"
CRASHES = Path(__file__).resolve().parent / "crashes"


@dataclass(frozen=True)
class Target:
    """A fuzz target: ``run(data)`` parses one input; ``allowed`` are the errors its parser documents."""

    name: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]


class _Scratch:
    """A private folder holding the guide's checkpoint files, one of which each input replaces.

    The engine reads files by path, as it reads a user's checkpoint, so an input is written into
    place rather than handed over in memory; the folder is made, and the guide's files read, once per
    process.
    """

    _folder: Path | None = None
    _guide: dict[str, bytes] = {}

    @classmethod
    def folder(cls) -> Path:
        if cls._folder is None:
            cls._guide = {name: (SEEDS / "guide" / name).read_bytes()
                          for name in ("model.index", "model.meta", "model.data-00000-of-00001")}
            cls._folder = Path(tempfile.mkdtemp(prefix="freezeflow-fuzz-"))
            for name, data in cls._guide.items():
                (cls._folder / name).write_bytes(data)
        return cls._folder

    @classmethod
    def checkpoint_with(cls, name: str, data: bytes) -> Path:
        """The guide's checkpoint prefix with file ``name`` holding ``data`` (the others restored)."""
        folder = cls.folder()
        for other in ("model.index", "model.meta"):
            if other != name:
                (folder / other).write_bytes(cls._guide[other])
        (folder / name).write_bytes(data)
        return folder / "model"


_TABLE_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")


def as_table(data: bytes) -> bytes:
    """A whole table file as is; anything else becomes the one data block of a table with valid CRCs.

    Every block carries a CRC32C, so nearly every mutation of a whole file stops at the first check;
    wrapping an input as block contents lets the fuzzer reach the entry and varint parsing behind it.
    """
    if data.endswith(_TABLE_MAGIC):
        return data
    from tasks.freeze_engine import checksum
    from tasks.freeze_engine.writer import varint

    def block(contents: bytes) -> bytes:
        crc = checksum.mask(checksum.extend(0, contents + b"\x00"))
        return contents + b"\x00" + crc.to_bytes(4, "little")

    handle = varint(0) + varint(len(data))
    key = b"\xff"
    index = varint(0) + varint(len(key)) + varint(len(handle)) + key + handle
    index += (0).to_bytes(4, "little") + (1).to_bytes(4, "little")  # one restart, at 0
    body = block(data)
    index_handle = varint(len(body)) + varint(len(index))
    footer = (varint(0) + varint(0) + index_handle).ljust(40, b"\x00") + _TABLE_MAGIC
    return body + block(index) + footer


def run_sstable(data: bytes) -> None:
    from tasks.freeze_engine.sstable import iterate_table

    for _key, _value in iterate_table(as_table(data)):
        pass


def _freeze(prefix: Path) -> None:
    from tasks.freeze_engine import checkpoint_variables, freeze_checkpoint, list_output_candidates

    output = prefix.parent / "frozen.pb"
    try:
        checkpoint_variables(prefix)
        list_output_candidates(prefix)
        freeze_checkpoint(prefix, ["y"], output)
    finally:
        if output.exists():
            os.unlink(output)


def run_bundle(data: bytes) -> None:
    _freeze(_Scratch.checkpoint_with("model.index", as_table(data)))


def run_meta(data: bytes) -> None:
    _freeze(_Scratch.checkpoint_with("model.meta", data))


def _signatures() -> list:
    from tasks.serving.rest import SignatureSpec, TensorInfo

    return [
        SignatureSpec("serving_default", {"inputs": TensorInfo("float32", (None,))},
                      {"outputs": TensorInfo("float32", (None,))}),
        SignatureSpec("images", {"image": TensorInfo("uint8", (None, 2, 2)), "label": TensorInfo("string", (None,))},
                      {"scores": TensorInfo("float32", (None, 3)), "names_bytes": TensorInfo("string", (None,))}),
        SignatureSpec("any", {"x": TensorInfo("int64", None), "flag": TensorInfo("bool", None)},
                      {"y": TensorInfo("float64", None)}),
    ]


def run_rest(data: bytes) -> None:
    from tasks.serving.rest import parse_json_body, parse_predict_request, signature_name_of

    body = parse_json_body(data)
    signature_name_of(body)
    for signature in _signatures():
        try:
            parse_predict_request(body, signature)
        except _rest_errors():
            continue  # each signature is tried: an error against one must not hide a crash against another


def _rest_errors() -> tuple[type[BaseException], ...]:
    from tasks.serving.rest import RequestError

    return (RequestError,)


def _engine_errors() -> tuple[type[BaseException], ...]:
    from tasks.core.errors import FreezeflowError

    return (FreezeflowError,)


def _table_errors() -> tuple[type[BaseException], ...]:
    from tasks.freeze_engine.sstable import TableFormatError

    return (TableFormatError,)


def targets() -> dict[str, Target]:
    """Every target by name (imports the parsers: call after atheris starts instrumenting, if it does)."""
    return {
        "sstable": Target("sstable", run_sstable, _table_errors()),
        "bundle": Target("bundle", run_bundle, _engine_errors()),
        "meta": Target("meta", run_meta, _engine_errors()),
        "rest": Target("rest", run_rest, _rest_errors()),
    }


NAMES = ("sstable", "bundle", "meta", "rest")
# Which modules each target exercises: the ones atheris instruments for coverage.
INSTRUMENTED = {
    "sstable": ("tasks.freeze_engine",),
    "bundle": ("tasks.freeze_engine",),
    "meta": ("tasks.freeze_engine",),
    "rest": ("tasks.serving.rest",),
}


def seed_inputs(name: str) -> list[Path]:
    """The seed corpus of a target: valid inputs that mutations start from."""
    folder = SEEDS / name
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def crash_inputs(name: str) -> list[Path]:
    """Inputs that once escaped a target with an undocumented error: kept as regression tests."""
    folder = CRASHES / name
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def check_one(target: Target, data: bytes) -> None:
    """Run one input; the documented errors are answers, anything else propagates (a crash)."""
    try:
        target.run(data)
    except target.allowed:
        pass
