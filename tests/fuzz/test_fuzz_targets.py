"""The parsers of untrusted bytes under atheris: a short coverage-guided run of each target, and every
input that once crashed one replayed as a regression test.

A target may raise only the errors its parser documents (fuzz/targets.py); anything else is a crash.
Longer runs: ``python -m fuzz.run TARGET -max_total_time=600``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz import targets as fuzz_targets

REPO = Path(__file__).resolve().parents[2]
# Inputs per target in the suite: a few seconds each (the engine targets write and freeze a checkpoint per input).
SHORT_RUNS = {"sstable": 4000, "bundle": 300, "meta": 300, "rest": 4000}


@pytest.mark.parametrize("name", fuzz_targets.NAMES)
def test_short_fuzz_run_finds_no_undocumented_error(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "fuzz.run", name, f"-runs={SHORT_RUNS[name]}", "-seed=1",
         f"-artifact_prefix={tmp_path}/", f"-corpus={tmp_path / 'corpus'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert result.returncode == 0 and not crashes, (
        f"fuzz target {name} escaped with an undocumented error (input kept as {crashes}; copy it to "
        f"fuzz/crashes/{name}/):\n{result.stderr[-3000:]}")
    assert "DONE" in result.stderr, result.stderr[-2000:]  # the run went through all its inputs


@pytest.mark.parametrize("name", fuzz_targets.NAMES)
def test_seed_inputs_are_read_without_error(name: str) -> None:
    """The seeds are valid inputs, so mutations start from what real files and bodies look like."""
    seeds = fuzz_targets.seed_inputs(name)
    assert seeds, f"fuzz/seeds/{name} holds no seed input"
    target = fuzz_targets.targets()[name]
    for seed in seeds:
        if seed.stem == "guide" or name == "rest":
            target.run(seed.read_bytes())  # the guide's own files and the sample bodies are read without error
        else:
            fuzz_targets.check_one(target, seed.read_bytes())


CRASH_CASES = [(name, path) for name in fuzz_targets.NAMES for path in fuzz_targets.crash_inputs(name)]


@pytest.mark.parametrize(("name", "path"), CRASH_CASES, ids=[f"{n}/{p.name[:20]}" for n, p in CRASH_CASES])
def test_input_that_once_crashed_raises_only_documented_errors(name: str, path: Path) -> None:
    fuzz_targets.check_one(fuzz_targets.targets()[name], path.read_bytes())
