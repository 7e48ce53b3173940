"""The restart loop every runtime shares: run, and when a run ends without a stop being
asked, report the failure and start again after an exponential, capped backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

_MAX_EXPONENT = 64  # keeps factor ** n finite; the cap is reached long before


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before the restart that follows the n-th consecutive failure (n >= 1):
    `initial_s * factor ** (n - 1)`, never more than `max_s`."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0

    def delay(self, failures: int) -> float:
        exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
        return float(min(self.max_s, self.initial_s * self.factor**exponent))


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to restart. A run that stayed ready `reset_after_s` or longer resets the count
    of consecutive failures; after `max_restarts` consecutive failures the runtime gives
    up (None: it never does)."""

    backoff: Backoff = field(default_factory=Backoff)
    reset_after_s: float = 60.0
    max_restarts: int | None = None

    def next_delay(self, failures: int) -> float | None:
        """The delay before the next start, or None to give up."""
        if self.max_restarts is not None and failures > self.max_restarts:
            return None
        return self.backoff.delay(failures)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How one run ended: a short reason, how long it had been ready (None: never), and
    the last lines of its log."""

    reason: str
    ready_for_s: float | None = None
    log_tail: tuple[str, ...] = ()


RunOnce = Callable[[int], Awaitable[RunOutcome]]
OnFailure = Callable[[int, RunOutcome, "float | None"], None]


async def supervise(
    run_once: RunOnce,
    policy: RestartPolicy,
    stop_requested: asyncio.Event,
    on_failure: OnFailure,
) -> None:
    """Call `run_once(attempt)` (attempt = 1, 2, ...) until `stop_requested` is set or the
    policy gives up. After each run that ended while no stop was asked, call
    `on_failure(attempt, outcome, delay)` (delay None: giving up), then wait the delay;
    a stop ends the wait at once. `run_once` must return soon after a stop is asked."""
    failures = 0
    attempt = 0
    while not stop_requested.is_set():
        attempt += 1
        outcome = await run_once(attempt)
        if stop_requested.is_set():
            return
        ready_for = outcome.ready_for_s
        if ready_for is not None and ready_for >= policy.reset_after_s:
            failures = 0
        failures += 1
        delay = policy.next_delay(failures)
        on_failure(attempt, outcome, delay)
        if delay is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_requested.wait(), delay)
