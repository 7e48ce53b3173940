"""`Leadership`: one `SchedulerRunner` per leadership term, started when this process
becomes the group's leader and stopped before it hands leadership over.

Each term starts a fresh runner, which rebuilds `ClusterState` by replaying every topic,
so a new leader sees every decision the previous one made durable. Its publishes go
through the term's `LeaderGate`: once `step_down()` has begun, nothing more is published,
and `step_down()` returns only after the batch that was being published (if any) is
durable or has failed. The faust hooks call `lead()` and `step_down()`; both are
idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from services.bus import Bus, BusError
from services.scheduler.distributed.errors import NotLeaderError
from services.scheduler.distributed.gate import LeaderGate, TermBus
from services.scheduler.runner import SchedulerRunner
from services.settings import Settings

log = logging.getLogger(__name__)
_RESTART_MAX_S = 10.0

RunnerFactory = Callable[[Bus, Settings], SchedulerRunner]
"""Builds the runner of a term from the (gated) bus and the settings."""


class Leadership:
    """The leader side of the scheduler app. `terms` counts the terms begun, `decisions`
    the events published over all terms."""

    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        *,
        drain_timeout_s: float,
        restart_delay_s: float = 1.0,
        runner_factory: RunnerFactory = SchedulerRunner,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.drain_timeout_s = drain_timeout_s
        self.restart_delay_s = restart_delay_s
        self.runner_factory = runner_factory
        self.terms = 0
        self._term_buses: list[TermBus] = []
        self._gate: LeaderGate | None = None
        self._term: asyncio.Task[None] | None = None
        self._closed = False
        self._stepping_down = asyncio.Lock()

    @property
    def leading(self) -> bool:
        return self._term is not None

    @property
    def decisions(self) -> int:
        return sum(term_bus.published for term_bus in self._term_buses)

    def lead(self) -> None:
        """Begin a term unless one is running or `close()` was called."""
        if self._term is not None or self._closed:
            return
        self.terms += 1
        gate = LeaderGate()
        gate.open()
        self._gate = gate
        self._term = asyncio.create_task(self._run_term(gate), name="scheduler-term")
        log.info("scheduler: leading (term %d)", self.terms)

    async def step_down(self) -> None:
        """End the running term, if any: refuse further publishes, cancel the runner, wait
        for its in-flight batch (up to `drain_timeout_s`)."""
        async with self._stepping_down:  # a second caller waits until the term is over
            term, gate = self._term, self._gate
            if term is None or gate is None:
                return
            gate.close()
            term.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await term
            drained = await gate.drain(self.drain_timeout_s)
            self._term = self._gate = None
        if not drained:
            log.warning("scheduler: a batch was still being published after stepping down")
        log.info("scheduler: standing by (term %d ended, %d decisions)", self.terms, self.decisions)

    async def close(self) -> None:
        """Step down for good: later `lead()` calls do nothing."""
        self._closed = True
        await self.step_down()

    async def _run_term(self, gate: LeaderGate) -> None:
        # Counted where they are published: a publish under way when the term is
        # cancelled still completes (see `LeaderGate.through`), after the runner is gone.
        term_bus = TermBus(self.bus, gate)
        self._term_buses.append(term_bus)
        delay = self.restart_delay_s
        while True:
            runner = self.runner_factory(term_bus, self.settings)
            began = time.monotonic()
            try:
                await runner.run()
            except NotLeaderError:
                return  # stepping down: the term is being cancelled
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise  # stepping down
                # Something it awaited was cancelled under it: a failure, not the end of
                # the term (which would otherwise end silently while still leading).
                log.exception("scheduler: runner was cancelled from inside; restarting it")
            except BusError as exc:
                # The bus is away (its own lines say more): one line, no traceback.
                log.warning("scheduler: runner stopped (%s); restarting it from the log", exc)
            except Exception:
                # Its state may hold decisions that never became durable: start over.
                log.exception("scheduler: runner failed; restarting it from the log")
            if time.monotonic() - began > _RESTART_MAX_S:
                delay = self.restart_delay_s  # it had been running: not the same failure
            await asyncio.sleep(delay)
            delay = min(_RESTART_MAX_S, 2 * delay)  # while it fails again and again
