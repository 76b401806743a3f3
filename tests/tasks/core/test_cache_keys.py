"""Cache keys follow content, not paths, and the code of everything a stage imports, and nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.cache_keys import code_digest, content_token, stage_key, token_digest
from tasks.core.imports import PROJECT_PACKAGES, PROJECT_ROOT, closure, imports_of, module_file
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


# --- the code in a stage's key: what its module imports, found from the source ------------------------

STAGES = ("train", "checkpoint", "freeze", "export", "validate", "upload")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A private copy of the project's packages, to edit without touching the real files."""
    root = tmp_path / "tree"
    for package in PROJECT_PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _key(stage: str, root: Path) -> str:
    # Digests are cached per process and root; the test edits sources under one root, so it forgets them
    # (an appended comment changes no import, so the cached import graph stays right).
    code_digest.cache_clear()
    return stage_key(stage, f"tasks.stages.{stage}", {"x": 1}, root)


def _edit(root: Path, module: str) -> None:
    path = module_file(module, root)
    assert path is not None
    path.write_text(path.read_text() + "\n# an edit\n")


def test_freeze_key_covers_every_module_the_freeze_stage_imports(tree: Path) -> None:
    modules = closure("tasks.stages.freeze", tree)
    # Reached only through function-local imports: the streaming engine and TensorFlow freezing.
    assert {"tasks.tf.freezing", "tasks.freeze_engine.engine", "tasks.freeze_engine.sstable"} <= set(modules)
    for module in modules:
        before = _key("freeze", tree)
        _edit(tree, module)
        assert _key("freeze", tree) != before, f"editing {module} left the freeze key unchanged"


@pytest.mark.parametrize(
    ("stage", "unrelated"),
    [("train", "tasks.serving.rest"), ("train", "tasks.freeze_engine.sstable"), ("export", "tasks.storage.gcs"),
     ("checkpoint", "tasks.tf.validation"), ("freeze", "freezeflow.cli.serving"), ("upload", "flows.publish")],
)
def test_editing_a_module_the_stage_does_not_import_keeps_its_key(tree: Path, stage: str, unrelated: str) -> None:
    assert unrelated not in closure(f"tasks.stages.{stage}", tree)
    before = _key(stage, tree)
    _edit(tree, unrelated)
    assert _key(stage, tree) == before


def test_every_stage_key_covers_its_own_work_module(tree: Path) -> None:
    work = {"train": "tasks.tf.training", "checkpoint": "tasks.tf.checkpoints", "freeze": "tasks.tf.freezing",
            "export": "tasks.tf.saved_models", "validate": "tasks.tf.validation", "upload": "tasks.storage.publishing"}
    for stage in STAGES:
        before = _key(stage, tree)
        _edit(tree, work[stage])
        assert _key(stage, tree) != before, stage


def test_imports_inside_functions_count_and_type_checking_imports_do_not(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "__init__.py").write_text("")
    (tmp_path / "tasks" / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from tasks import c\n"
        "def f():\n    from . import b\n    import tensorflow\n"
    )
    for name in "bc":
        (tmp_path / "tasks" / f"{name}.py").write_text("")
    assert closure("tasks.a", tmp_path) == ("tasks", "tasks.a", "tasks.b")
    edges = {edge.target: edge for edge in imports_of("tasks.a", tmp_path)}
    assert not edges["tasks.b"].module_level and edges["tensorflow"].external


def test_the_policy_key_is_stage_key_of_the_task_inputs() -> None:
    from tasks.stages.cache_policy import stage_policy

    policy = stage_policy("validate", "tasks.stages.validate", ignore=("report_key",))
    inputs = {"reference_inputs": [1.0], "tolerance": 0.1}
    key = policy.compute_key(None, {**inputs, "report_key": "shown-in-the-ui"}, {})
    assert key == stage_key("validate", "tasks.stages.validate", inputs)
    assert key != stage_key("validate", "tasks.stages.validate", {**inputs, "tolerance": 0.2})


def test_stage_key_needs_neither_prefect_nor_tensorflow() -> None:
    code = (
        "import sys\n"
        "from tasks.core.cache_keys import stage_key\n"
        "keys = [stage_key(s, 'tasks.stages.' + s, {'x': 1}) for s in %r]\n"
        "loaded = [m for m in ('prefect', 'tensorflow') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "print(len(set(keys)))\n" % (STAGES,)
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(STAGES))


def test_code_digests_are_remembered_per_source_tree_and_any_edit_forgets_them(tree: Path, workspace_home: Path) -> None:
    import json

    code_digest.cache_clear()
    first = code_digest("tasks.stages.freeze", tree)
    memo_file = workspace_home / "code-digests.json"
    memo = json.loads(memo_file.read_text())
    assert (memo["root"], memo["modules"]["tasks.stages.freeze"]) == (str(tree), first)
    # A remembered digest is read back rather than recomputed: a planted value comes back.
    memo["modules"]["tasks.stages.freeze"] = "planted"
    memo_file.write_text(json.dumps(memo))
    code_digest.cache_clear()
    assert code_digest("tasks.stages.freeze", tree) == "planted"
    _edit(tree, "tasks.serving.rest")  # outside the freeze stage's code, but the tree is no longer the same
    code_digest.cache_clear()
    assert code_digest("tasks.stages.freeze", tree) == first
    memo_file.write_text("{not json")  # a broken memo is as good as none
    code_digest.cache_clear()
    assert code_digest("tasks.stages.freeze", tree) == first
