"""Shared fixtures: real buses in temporary directories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.bus import EmbeddedBus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EmbeddedBus]:
    """A started embedded bus on a fresh SQLite file, closed after the test."""
    instance = EmbeddedBus(tmp_path / "bus.sqlite3", partitions=4, poll_interval_s=0.05)
    await instance.start()
    yield instance
    await instance.close()
