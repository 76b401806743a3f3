"""The smoke flow CI launches: the whole pipeline, uncached, held to the guide's numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.smoke import check_guide_answers, smoke
from tasks.core.errors import ValidationFailed
from tests.support.records import run_summary

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_smoke_runs_every_stage_fresh_and_checks_the_guide(tmp_path: Path) -> None:
    first = smoke(destination=str(tmp_path / "d"))
    second = smoke(destination=str(tmp_path / "d"))
    assert [s.state for s in first.stages] == ["Completed"] * 6
    assert [s.state for s in second.stages] == ["Completed"] * 6  # never served from the cache
    assert (tmp_path / "d" / "smoke" / "1" / "manifest.json").is_file()


def test_guide_check_fails_on_a_wrong_answer() -> None:
    summary = run_summary(predictions={"checkpoint": [2.0, 3.0, 4.0], "frozen_graph": [2.0, 3.0, 4.1],
                                       "saved_model": [2.0, 3.0, 4.0]})
    with pytest.raises(ValidationFailed, match=r"frozen_graph gives 4.1 at x=6.0, the guide says 4.0"):
        check_guide_answers(summary)
