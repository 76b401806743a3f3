"""Fixtures the command tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def api_env(prefect_api: None, workspace_home: Path) -> dict[str, str]:
    """Point a CLI process at the session's Prefect API (no embedded server to start) and this test's home."""
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "FREEZEFLOW_HOME": str(workspace_home)}
