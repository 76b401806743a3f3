"""Fixtures of the serving tests: the guide's model (and a second version of it) exported once, a published folder."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tasks.core.records import ExportedModel
from tests.support.serving import export_guide, publish


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExportedModel]:
    """The guide's model (y = 0.5x + 1) and a second version of it (y = 2x), exported once per module."""
    root = tmp_path_factory.mktemp("exports")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FREEZEFLOW_HOME", str(root / "home"))
        return {"guide": export_guide(root / "guide", 0.5, 1.0), "double": export_guide(root / "double", 2.0, 0.0)}


@pytest.fixture
def model_dir(tmp_path: Path, exports: dict[str, ExportedModel]) -> Path:
    """DEST/linear with version 1 (the guide's model) published."""
    folder = tmp_path / "published" / "linear"
    folder.mkdir(parents=True)
    publish(folder, 1, exports["guide"])
    return folder


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http
