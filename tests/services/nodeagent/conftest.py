"""Fixtures of the node agent tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.nodeagent.runtimes import ProcessRuntime
from tests.services.nodeagent.helpers import Reports, quick_config


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
async def runtime(tmp_path: Path, reports: Reports) -> AsyncIterator[ProcessRuntime]:
    async with ProcessRuntime(quick_config(tmp_path), reports) as rt:
        yield rt
