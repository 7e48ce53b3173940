"""RepeatFilter: a repeating library message becomes one line per interval."""

from __future__ import annotations

import logging

from services.logfilter import RepeatFilter


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_pass_once_per_interval_with_a_count() -> None:
    now = [0.0]
    repeats = RepeatFilter(("aiokafka",), interval_s=10, clock=lambda: now[0])
    passed = []
    for step in range(25):  # one every 0.5 s for 12.5 s
        now[0] = step * 0.5
        record = _record("aiokafka.conn", "Unable connect to %r", "127.0.0.1:9092")
        if repeats.filter(record):
            passed.append(record.getMessage())
    assert passed == [
        "Unable connect to '127.0.0.1:9092'",
        "Unable connect to '127.0.0.1:9092' (19 more like this in the last 10 s)",
    ]


def test_other_loggers_and_other_messages_pass() -> None:
    repeats = RepeatFilter(("aiokafka",), clock=lambda: 0.0)
    assert all(repeats.filter(_record("services.bus", "x")) for _ in range(3))
    assert repeats.filter(_record("aiokafka", "one"))
    assert repeats.filter(_record("aiokafka", "two"))
    assert not repeats.filter(_record("aiokafka", "one"))
