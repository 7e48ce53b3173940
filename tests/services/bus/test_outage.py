"""How a bus tells the log that its writes fail: the first failure at once, then one line
per interval with the count held back, and one line when writes succeed again."""

from __future__ import annotations

import logging

import pytest

from services.bus.outage import OutageLog

FULL = "database or disk is full"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outage(clock: Clock) -> OutageLog:
    logger = logging.getLogger("tests.outage")
    return OutageLog("test bus", logger, interval_s=10, quiet_s=2, clock=clock)


class Lines:
    """What the bus logged since the last look."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        caplog.set_level(logging.WARNING, "tests.outage")

    def said(self) -> list[str]:
        out = [r.getMessage() for r in self.caplog.records if r.name == "tests.outage"]
        self.caplog.clear()
        return out


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Lines:
    return Lines(caplog)


def test_an_outage_is_one_line_per_interval_with_the_count_held_back(
    outage: OutageLog, clock: Clock, lines: Lines
) -> None:
    outage.succeeded()
    assert lines.said() == []
    outage.failed(FULL, 3)
    [first] = lines.said()
    assert first.startswith(f"test bus: writes are failing ({FULL})")
    assert "3 refused" in first and outage.failing
    for _ in range(1000):
        clock.now += 0.005
        outage.failed(FULL)
    assert lines.said() == []
    clock.now += 5.1
    outage.failed(FULL, 2)
    assert lines.said() == [
        f"test bus: writes still failing ({FULL}); 1002 refused in the last 10 s"
    ]
    outage.failed(FULL)
    clock.now += 3
    outage.succeeded()
    assert lines.said() == [
        "test bus: writes succeed again, 13.1 s after they began failing; 1006 refused"
    ]
    assert not outage.failing
    outage.succeeded()
    assert lines.said() == []


def test_writes_passing_between_failures_do_not_end_the_outage(
    outage: OutageLog, clock: Clock, lines: Lines
) -> None:
    for _ in range(300):  # a nearly full disk: small writes pass, large ones do not
        outage.failed(FULL)
        clock.now += 0.05
        outage.succeeded()
        clock.now += 0.05
    assert len(lines.said()) == 3, "one line per 10 s, and no end"  # at 0, 10 and 20 s
    clock.now += 2
    outage.succeeded()
    [end] = lines.said()
    assert end.endswith("s after they began failing; 300 refused")
