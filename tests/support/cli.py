"""Running ``python -m freezeflow`` as a user does: a separate process, its exit code, and what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("prefect", "tensorflow")  # what a fully cached run must not import
ALL_CACHED = "  stages: train Cached, checkpoint Cached, freeze Cached, export Cached, validate Cached, upload Cached"


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def run_freezeflow(*args: str, cwd: Path, env: Optional[Mapping[str, str]] = None, drop: tuple[str, ...] = (),
                   timeout: float = 120) -> Outcome:
    """The command in its own process; a hang past ``timeout`` fails the test that called it."""
    # A clean slate, as a user's shell would be: no Prefect or freezeflow settings of the test process.
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("PREFECT_", "FREEZEFLOW_")) and k not in drop}
    environment.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", **(env or {})})
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH", "")]))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "freezeflow", *args], cwd=cwd, env=environment,
                            capture_output=True, text=True, timeout=timeout)
    return Outcome(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def freezeflow(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed console script in a fresh process, as a user runs it."""
    exe = Path(sys.executable).with_name("freezeflow")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    environment.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", **(env or {})})
    return subprocess.run([str(exe), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


def run_importtime(*args: str, cwd: Path, env: Mapping[str, str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    """``python -X importtime -m freezeflow ARGS`` in a clean environment; the top-level packages it imported."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FREEZEFLOW_"))}
    environment.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", **env,
                        "PYTHONPATH": str(REPO)})
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "freezeflow", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    return done, imported
