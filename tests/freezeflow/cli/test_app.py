"""The freezeflow command as a whole: what importing it costs."""

from __future__ import annotations

import subprocess
import sys

from tests.support.cli import REPO


def test_cli_module_imports_neither_prefect_nor_tensorflow() -> None:
    code = "import sys, freezeflow.cli.app; bad = [m for m in ('prefect', 'tensorflow') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
