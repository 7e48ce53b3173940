"""The shared restart loop and its policy."""

from __future__ import annotations

import asyncio

import pytest

from services.nodeagent.runtimes import Backoff, RestartPolicy, RunOutcome
from services.nodeagent.runtimes.supervise import supervise


@pytest.mark.parametrize(
    ("backoff", "failures", "delay"),
    [
        (Backoff(0.5, 2.0, 30.0), 1, 0.5),
        (Backoff(0.5, 2.0, 30.0), 2, 1.0),
        (Backoff(0.5, 2.0, 30.0), 4, 4.0),
        (Backoff(0.5, 2.0, 30.0), 7, 30.0),
        (Backoff(0.5, 2.0, 30.0), 10_000, 30.0),
        (Backoff(0.5, 2.0, 30.0), 0, 0.5),
        (Backoff(1.0, 1.0, 5.0), 9, 1.0),
        (Backoff(2.0, 3.0, 10.0), 2, 6.0),
    ],
)
def test_backoff_grows_exponentially_to_its_cap(
    backoff: Backoff, failures: int, delay: float
) -> None:
    assert backoff.delay(failures) == delay


@pytest.mark.parametrize(
    ("max_restarts", "failures", "delay"),
    [(None, 1, 0.5), (None, 500, 30.0), (0, 1, None), (2, 2, 1.0), (2, 3, None)],
)
def test_restart_policy_gives_up_after_max_restarts(
    max_restarts: int | None, failures: int, delay: float | None
) -> None:
    assert RestartPolicy(max_restarts=max_restarts).next_delay(failures) == delay


class Script:
    """A run_once that replays outcomes, and records the failures it is told about."""

    def __init__(self, *outcomes: RunOutcome, stop: asyncio.Event | None = None) -> None:
        self.outcomes = list(outcomes)
        self.attempts: list[int] = []
        self.failures: list[tuple[int, str, float | None]] = []
        self.stop = stop
        self.failed = asyncio.Event()

    async def run_once(self, attempt: int) -> RunOutcome:
        self.attempts.append(attempt)
        if not self.outcomes and self.stop is not None:
            self.stop.set()
            return RunOutcome("stopped")
        return self.outcomes.pop(0)

    def on_failure(self, attempt: int, outcome: RunOutcome, delay: float | None) -> None:
        self.failures.append((attempt, outcome.reason, delay))
        self.failed.set()


async def test_a_long_ready_run_resets_the_failure_count() -> None:
    stop = asyncio.Event()
    script = Script(
        RunOutcome("crash", None),
        RunOutcome("crash", 0.5),
        RunOutcome("crash", 120.0),  # ready for longer than reset_after_s
        RunOutcome("crash", None),
        stop=stop,
    )
    policy = RestartPolicy(Backoff(0.001, 10.0, 1.0), reset_after_s=60.0)

    await supervise(script.run_once, policy, stop, script.on_failure)

    assert script.failures == [
        (1, "crash", 0.001),
        (2, "crash", 0.01),
        (3, "crash", 0.001),
        (4, "crash", 0.01),
    ]
    assert script.attempts == [1, 2, 3, 4, 5]


async def test_giving_up_ends_the_loop() -> None:
    script = Script(RunOutcome("a"), RunOutcome("b"), RunOutcome("never run"))
    policy = RestartPolicy(Backoff(0.001), max_restarts=1)

    await supervise(script.run_once, policy, asyncio.Event(), script.on_failure)

    assert script.failures == [(1, "a", 0.001), (2, "b", None)]


async def test_a_stop_during_the_backoff_ends_the_wait_at_once() -> None:
    stop = asyncio.Event()
    script = Script(RunOutcome("crash"))
    policy = RestartPolicy(Backoff(initial_s=3600.0, max_s=3600.0))

    loop = asyncio.create_task(supervise(script.run_once, policy, stop, script.on_failure))
    await asyncio.wait_for(script.failed.wait(), 10)
    stop.set()
    await asyncio.wait_for(loop, 10)

    assert script.failures == [(1, "crash", 3600.0)]


async def test_a_run_ended_by_a_stop_is_no_failure() -> None:
    stop = asyncio.Event()
    script = Script(stop=stop)
    await supervise(script.run_once, RestartPolicy(), stop, script.on_failure)
    assert script.failures == []
    assert script.attempts == [1]
