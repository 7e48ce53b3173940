"""Time bounds of the API's queries: parsing a date or date-time, and the parameters that
take one (documented alike everywhere)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import Query

from services.ingress.errors import BadRequest

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2299, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
"""The span of ClickHouse's DateTime64: time bounds are clamped to it."""
TIME_BOUND_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
}
"""How a `parse_bound` parameter is documented in OpenAPI."""


def parse_bound(raw: str | None, default: datetime, *, end: bool, field: str) -> datetime:
    """A date (`2024-04-11`) or date-time (`2024-04-11T10:00:00`, `2024-04-11 10:00:00`,
    with or without an offset; UTC when none). A date as the end bound means the end of
    that day (the end day is inclusive). Clamped to [`EARLIEST`, `LATEST`], so a far
    bound means "everything" (the store holds nothing outside it)."""
    if not raw:
        return default
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        try:
            moment = datetime.fromisoformat(raw.replace(" ", "T", 1))
        except ValueError as exc:
            raise BadRequest("must be YYYY-MM-DD or an ISO 8601 date-time", field=field) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        # An offset can carry year 1 or 9999 past datetime's own range: compare, then convert.
        return min(max(moment, EARLIEST), LATEST).astimezone(UTC)
    if day > LATEST.date():  # and so `date.max` plus a day never overflows
        return LATEST
    bound = datetime.combine(day, time(), tzinfo=UTC) + timedelta(days=1 if end else 0)
    return min(max(bound, EARLIEST), LATEST)


StartTime = Annotated[
    str | None, Query(description="Default 1970-01-01.", json_schema_extra=TIME_BOUND_SCHEMA)
]
"""The NGPU API's `startTime`."""
EndTime = Annotated[
    str | None,
    Query(description="Default 2099-01-01; a date is inclusive.",
          json_schema_extra=TIME_BOUND_SCHEMA),
]  # fmt: skip
"""The NGPU API's `endTime`."""
From = Annotated[
    str | None,
    Query(alias="from", description="Date or date-time (inclusive).",
          json_schema_extra=TIME_BOUND_SCHEMA),
]  # fmt: skip
"""The management API's `from`."""
To = Annotated[
    str | None,
    Query(description="Date (inclusive) or date-time (exclusive).",
          json_schema_extra=TIME_BOUND_SCHEMA),
]  # fmt: skip
"""The management API's `to`."""
