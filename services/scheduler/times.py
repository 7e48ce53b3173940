"""The one conversion of times: aware `datetime` in, float seconds since the epoch out.
The core never reads a clock; callers pass `now` in."""

from __future__ import annotations

from datetime import datetime

from services.scheduler.errors import NaiveDatetimeError


def epoch_s(moment: datetime) -> float:
    """Seconds since the Unix epoch. Raises `NaiveDatetimeError` for a naive datetime,
    which would silently be read as local time."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveDatetimeError(f"naive datetime {moment.isoformat()}: pass a UTC-aware time")
    return moment.timestamp()
