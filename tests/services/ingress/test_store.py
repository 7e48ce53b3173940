"""The ingress's view of the task store: its failures answer without the store's text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from services.ingress.errors import ServiceUnavailable
from services.ingress.store import TaskStore

CLICKHOUSE_TEXT = (
    "Code: 60. DB::Exception: Unknown table expression identifier "
    "'ngpu.task_submissions'. (UNKNOWN_TABLE)"
)


class FailingClient:
    """A clickhouse-connect client stand-in whose every query fails as a server would."""

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        raise DatabaseError(CLICKHOUSE_TEXT)


async def test_a_failing_store_answers_503_without_its_own_text() -> None:
    store = TaskStore(FailingClient(), "ngpu")
    moment = datetime(2024, 4, 11, tzinfo=UTC)
    with pytest.raises(ServiceUnavailable) as caught:
        await store.list_entries("w", moment, moment, None, None)
    assert caught.value.message == "the task store is unavailable; try again later"
    assert "DB::Exception" in str(caught.value.__cause__)  # kept for the log
