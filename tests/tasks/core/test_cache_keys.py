"""Cache keys follow content, not paths, and stale records are dropped before Prefect sees them."""

from __future__ import annotations

import shutil
from pathlib import Path

from tasks.core.cache_keys import content_token, token_digest
from tasks.core.records import Artifact


def test_key_follows_content_not_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"same")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first, second = Artifact.of(tmp_path / "a"), Artifact.of(tmp_path / "b")
    assert first.root != second.root
    assert token_digest({"x": first}) == token_digest({"x": second})
    (tmp_path / "b" / "f").write_bytes(b"changed")
    assert token_digest({"x": first}) != token_digest({"x": Artifact.of(tmp_path / "b")})


def test_token_keeps_parameter_values() -> None:
    assert content_token({"b": 1, "a": [1.5, "x", None]}) == {"a": [1.5, "x", None], "b": 1}
    assert token_digest({"lr": 0.1}) != token_digest({"lr": 0.2})
