"""Content digests: a file's SHA-256 read in chunks, and one digest over a set independent of order."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tasks.core.digests import combined_digest, file_sha256, text_sha256


def test_a_file_larger_than_one_chunk_digests_as_its_whole_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * (5 * 4096 + 7)  # a little over 5 MiB: several 1 MiB reads and a short tail
    path = tmp_path / "variables.data"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == file_sha256(path)


def test_an_empty_file_has_the_empty_digest(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_the_combined_digest_ignores_listing_order_and_notices_any_change() -> None:
    entries = [("saved_model.pb", "a" * 64), ("variables/variables.index", "b" * 64)]
    digest = combined_digest(entries)
    assert combined_digest(list(reversed(entries))) == digest
    assert combined_digest([("saved_model.pb", "a" * 64), ("variables/variables.index", "c" * 64)]) != digest
    assert combined_digest([("renamed.pb", "a" * 64), ("variables/variables.index", "b" * 64)]) != digest
    assert combined_digest(entries[:1]) != digest


def test_path_and_digest_cannot_be_shifted_into_each_other() -> None:
    # The separators keep ("ab", "c") and ("a", "bc") apart.
    assert combined_digest([("ab", "c")]) != combined_digest([("a", "bc")])


def test_text_digest_is_the_sha256_of_its_utf8_bytes() -> None:
    assert text_sha256("x → y") == hashlib.sha256("x → y".encode()).hexdigest()
