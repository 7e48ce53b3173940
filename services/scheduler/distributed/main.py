"""`run_scheduler_app`: the distributed scheduler role inside the caller's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import faust

from services.bus import bus_from_settings
from services.readiness import Component
from services.scheduler.distributed.app import GroupTiming, build_app
from services.scheduler.distributed.errors import SchedulerAppError
from services.scheduler.distributed.leadership import Leadership
from services.scheduler.runner import SchedulerRunner
from services.settings import Settings

log = logging.getLogger(__name__)


async def run_scheduler_app(
    settings: Settings,
    stopping: asyncio.Event,
    *,
    timing: GroupTiming | None = None,
    ready: Component | None = None,
) -> None:
    """Join the scheduler group and schedule whenever this process leads, until `stopping`
    is set; then step down and leave the group, so a standby takes over at once.

    Opens its own bus (`bus_from_settings`, normally `NGPU_BUS=kafka`) for the runner, and
    a temporary faust data dir under `settings.data_dir` (removed on return). Logs
    "scheduler: leading (term N)" and "scheduler: standing by ..." as leadership moves.
    Raises `SchedulerAppError` if the faust app crashes. `ready` is caught up once this
    process stands by, or leads with a runner that has caught up with the log."""
    timing = timing or GroupTiming()
    ready = ready or Component("scheduler")
    bus = bus_from_settings(settings)
    await bus.start()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    datadir = tempfile.mkdtemp(prefix="faust-scheduler-", dir=settings.data_dir)
    try:
        runner = functools.partial(SchedulerRunner, ready=ready)
        leadership = Leadership(bus, settings, drain_timeout_s=_drain_timeout_s(settings),
                                runner_factory=runner)  # fmt: skip
        app = build_app(settings, timing, Path(datadir))
        _connect(app, leadership, ready)
        await _run_until(app, leadership, stopping)
    finally:
        shutil.rmtree(datadir, ignore_errors=True)
        await bus.close()


def _drain_timeout_s(settings: Settings) -> float:
    # A publish gives up after the publish timeout; a second of slack for its abort.
    return settings.kafka_publish_timeout_s + 1.0


def _connect(app: faust.App, leadership: Leadership, ready: Component) -> None:
    # Receivers get (sender, partitions, signal=...); only the leader flag matters.
    async def assigned(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        if app.is_leader():
            leadership.lead()
        else:
            await leadership.step_down()  # a no-op after the revocation that came first
            log.info("scheduler: standing by")
            ready.mark_caught_up()  # a standby has nothing to catch up with

    async def revoked(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        # Eager rebalance: every member gets here before anyone is given the leader
        # partition again, so the old term ends before a new one can begin elsewhere.
        await leadership.step_down()

    app.on_partitions_assigned.connect(assigned)
    app.on_partitions_revoked.connect(revoked)


async def _run_until(app: faust.App, leadership: Leadership, stopping: asyncio.Event) -> None:
    stop_wait = asyncio.create_task(stopping.wait())
    app_stopped = asyncio.create_task(app.wait_until_stopped())
    try:
        start = asyncio.create_task(app.start())
        await asyncio.wait({start, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if start.done():
            start.result()
            await asyncio.wait({app_stopped, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        else:
            start.cancel()
    finally:
        # Leave no runner behind: faust sends no revocation once it is stopping.
        await leadership.close()
        stop_wait.cancel()
        crashed = app_stopped.done() and not stopping.is_set()
        app_stopped.cancel()
        with contextlib.suppress(Exception):
            await app.stop()
    if crashed:
        raise SchedulerAppError(f"the scheduler's faust app stopped: {app.crash_reason!r}")
