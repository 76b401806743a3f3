"""The entrypoint digest the cached fast path finds without importing the user's module: the one the train
stage's key uses, or none at all when it could differ."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tasks.tf.entrypoints import DEFAULT_ENTRYPOINT, entrypoint_digest, entrypoint_source_digest


def package(tmp_path: Path, source: str) -> str:
    for name in [m for m in sys.modules if m.split(".")[0] == "userpkg_digest"]:
        del sys.modules[name]  # another test's package of the same name, at another path
    folder = tmp_path / "userpkg_digest"
    folder.mkdir(exist_ok=True)
    (folder / "__init__.py").write_text("")
    (folder / "helpers.py").write_text("def build(ctx):\n    return None\n")
    (folder / "model.py").write_text(source)
    return "userpkg_digest.model:build"


def test_the_default_entrypoint_and_a_file_entrypoint_get_the_digest_the_train_stage_uses(tmp_path: Path) -> None:
    assert entrypoint_source_digest(DEFAULT_ENTRYPOINT) == entrypoint_digest(DEFAULT_ENTRYPOINT)
    script = tmp_path / "train_me.py"
    script.write_text("def build(ctx):\n    return None\n")
    assert entrypoint_source_digest(f"{script}:build") == entrypoint_digest(f"{script}:build")
    assert entrypoint_source_digest(f"{tmp_path / 'missing.py'}:build") is None


@pytest.mark.parametrize("source, same", [
    ("import os\n\ndef build(ctx):\n    return os.sep\n", True),
    ("from userpkg_digest.helpers import build\n", False),  # defined elsewhere: digest of helpers.py
    ("from userpkg_digest.helpers import *\n", False),
    ("import functools\n\n@functools.lru_cache\ndef build(ctx):\n    return None\n", False),
    ("def build(ctx):\n    return None\n\nbuild = print\n", False),
], ids=["defined-here", "imported", "star-import", "decorated", "rebound"])
def test_a_module_entrypoint_is_known_only_when_its_own_file_defines_the_function(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, same: bool
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    entrypoint = package(tmp_path, source)
    found = entrypoint_source_digest(entrypoint)
    if same:
        assert found == entrypoint_digest(entrypoint)
    else:
        assert found is None
    assert "userpkg_digest.model" not in sys.modules or same  # found without importing the module itself


def test_finding_the_digest_imports_no_tensorflow() -> None:
    code = ("import sys; from tasks.tf.entrypoints import entrypoint_source_digest as d; "
            f"assert d({DEFAULT_ENTRYPOINT!r}); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "False"
