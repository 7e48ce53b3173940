"""Task identifiers: the contract's time-shaped taskID and the numeric `taskInfo.id`."""

from __future__ import annotations

import itertools
import random
import secrets
import threading
import time
from datetime import UTC, datetime

_WORKER = secrets.randbelow(1 << 10)
_SEQUENCE = itertools.count()
_LOCK = threading.Lock()
_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def new_task_id(now: datetime) -> str:
    """`YYYYMMDD_HH_MM_SS_<microseconds><4 random digits>` in UTC, shaped like the
    contract's `20240411_13_36_11_922124`; the random digits keep ids from several
    ingress processes in the same microsecond apart. (Not `secrets`: a taskID grants
    nothing without its workspace's bearer, and `os.urandom` releases the GIL on the
    hottest path, which a busy worker thread may then hold for its 5 ms switch interval.)"""
    return f"{now:%Y%m%d_%H_%M_%S}_{now.microsecond:06d}{random.randrange(10_000):04d}"  # noqa: S311


def issued_at(task_id: str) -> datetime | None:
    """When `task_id` was issued (UTC, to the second), or None if it is not shaped like one."""
    try:
        return datetime.strptime(task_id[:17], "%Y%m%d_%H_%M_%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def new_task_seq() -> int:
    """A positive 63-bit number, increasing in time: milliseconds since 2024 (41 bits), a
    random worker id per process (10 bits), a per-process counter (12 bits)."""
    with _LOCK:
        millis = int(time.time() * 1000) - _EPOCH_MS
        return (millis << 22) | (_WORKER << 12) | (next(_SEQUENCE) & 0xFFF)
