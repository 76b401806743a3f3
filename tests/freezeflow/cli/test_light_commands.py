"""Commands that need neither Prefect nor TensorFlow start without importing them (``python -X importtime``).

Each command runs in a fresh interpreter, as a user runs it; the import log it writes on stderr is
read back, so a module that slips a ``import prefect`` in at module level fails here with its name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HEAVY = ("prefect", "tensorflow")


def run_measured(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, dict[str, int]]:
    """Run ``python -X importtime -m freezeflow ARGS``; return the result and each top-level package's
    cumulative import time in microseconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "FREEZEFLOW_HOME": str(cwd / ".freezeflow")}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "freezeflow", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    imported: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
            if cumulative.isdigit() and name.lstrip() == name:  # top level: not indented under a parent
                imported[name.split(".")[0]] = imported.get(name.split(".")[0], 0) + int(cumulative)
    return done, imported


@pytest.fixture(scope="module")
def files(guide_checkpoint_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The guide's checkpoint, a frozen graph of it (made by the command under test) and an empty destination."""
    root = tmp_path_factory.mktemp("light")
    (root / "published").mkdir()
    done, _ = run_measured("freeze", str(guide_checkpoint_dir / "model"), "--output-node", "y", "-o",
                           str(root / "frozen.pb"), cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    return {"root": root, "checkpoint": guide_checkpoint_dir / "model", "frozen": root / "frozen.pb"}


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["inspect", "{frozen}"],
        ["inspect", "{checkpoint}"],
        ["freeze", "{checkpoint}", "--output-node", "y", "-o", "{root}/again.pb"],
        ["ls", "{root}/published"],
    ],
    ids=["help", "inspect-frozen-graph", "inspect-checkpoint", "freeze", "ls"],
)
def test_command_imports_neither_prefect_nor_tensorflow(files: dict[str, Path], command: list[str]) -> None:
    args = [part.format(**{k: str(v) for k, v in files.items()}) for part in command]
    done, imported = run_measured(*args, cwd=files["root"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert [name for name in HEAVY if name in imported] == []
    assert "freezeflow" in imported  # the log was read: the command's own package is in it
