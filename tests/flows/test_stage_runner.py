"""The stage runner's clock: every stage's final state and time, in order, and a failed stage fails the run."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.states import Completed, Failed

from flows.stage_runner import StageClock
from tasks.core.errors import ValidationFailed
from tasks.core.records import StageRun


def _stage(state: Any) -> Any:
    return lambda *args, return_state, **kwargs: state


def test_the_clock_records_each_stage_s_state_name_and_returns_its_result() -> None:
    clock = StageClock()
    assert clock.run("train", _stage(Completed(data=41))) == 41
    assert clock.run("checkpoint", _stage(Completed(data="ckpt", name="Cached"))) == "ckpt"
    assert [(s.name, s.state) for s in clock.stages] == [("train", "Completed"), ("checkpoint", "Cached")]
    assert all(isinstance(s, StageRun) and s.seconds >= 0 for s in clock.stages)


def test_a_failed_stage_is_recorded_and_raises_its_own_error() -> None:
    clock = StageClock()
    failed = Failed(data=ValidationFailed("frozen_graph differs from checkpoint by 0.5"))
    with pytest.raises(ValidationFailed, match="differs from checkpoint by 0.5"):
        clock.run("validate", _stage(failed))
    assert [(s.name, s.state) for s in clock.stages] == [("validate", "Failed")]
