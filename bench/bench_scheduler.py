"""Scheduler decisions per second: the faust scheduler on Kafka against the embedded
runner on the embedded log, on the same workload, printed as a Markdown table.

    .venv/bin/python bench/bench_scheduler.py [--tasks 10000] [--batch 500] [--repeat 3]
        [--kafka-scheduler child|inprocess]

Workload, published straight onto the bus as events (no ingress, no dispatcher): 20 nodes
that heartbeat every 5 s, one workspace with a ready replica on each of them and a
concurrency of 1,000 per replica (20,000 slots: every task fits, nothing completes), then
`--tasks` `TaskSubmitted`, encoded beforehand and published in batches of `--batch`.

Two passes per bus, each on a fresh log (a new data dir, a new Kafka namespace):
- backlog drain: the backlog is in the log before the scheduler starts; timed from the
  start of the scheduler (the runner's task; the child process's spawn) to the last
  `TaskDispatched`. On Kafka the decision rate counts from the leadership term start (the
  "scheduler: leading" log line), so that it covers the same work as the embedded
  runner's: replay the log, fold the backlog, decide, publish.
- steady: the scheduler runs and has dispatched a probe task (so it leads and is caught
  up); then the tasks are published as fast as this process can while it schedules them.
  Timed from the first publish to the last `TaskDispatched`.
A dispatch counts when a consumer in this process receives it from the tasks topic
(recognised by its bytes, keyed by task id: no decoding); each task must be dispatched
exactly once. Each bus gets one discarded warm-up pass (the broker's JIT, first use of
the codec), then `--repeat` of each pass; the table shows the run of median rate.

The embedded runner runs in this process on the bench's bus, as the roles of `ngpu up`
share one. On Kafka (a broker from compose/kafka, started in a temporary directory and
stopped at the end; `NGPU_TEST_KAFKA_BOOTSTRAP` names a running one instead) the
scheduler is by default a child process, `python -m services.cli serve --roles scheduler`
as in production (uvloop, its own process); `--kafka-scheduler inprocess` runs
`run_scheduler_app` in this event loop instead, as the embedded runner is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from events import Envelope, encode, topics  # noqa: E402
from events.base import Event  # noqa: E402
from events.deployment import (  # noqa: E402
    DeploymentReady,
    DeploymentRequested,
    DeploymentStarting,
)
from events.node import NodeHeartbeat  # noqa: E402
from services.bus import Bus, Outgoing, bus_from_settings, publish_events  # noqa: E402
from services.scheduler.distributed import run_scheduler_app  # noqa: E402
from services.scheduler.runner import SchedulerRunner  # noqa: E402
from services.settings import Settings, load_settings  # noqa: E402
from tests.services.scheduler.builders import (  # noqa: E402
    PORT,
    node_registered,
    submitted,
    workspace_registered,
)
from tests.support.kafka import KafkaBroker  # noqa: E402

NODES = tuple(f"node-{i:02d}" for i in range(20))
WORKSPACE = "ws-bench"
CONCURRENCY = 1000
HEARTBEAT_EVERY_S = 5.0
SETTINGS = {  # heartbeat window min(60, 3 * 10) = 30 s: the 5 s heartbeats keep nodes fresh
    "heartbeat_interval_s": 10.0,
    "node_lost_after_s": 60.0,
    "scheduler_tick_s": 0.5,
    "bus_partitions": 8,
}
DISPATCHED = b'"type":"TaskDispatched"'
LEADING = "scheduler: leading"
DEADLINE_S = 300.0
PROBE = "probe"
T = TypeVar("T")


# -- the workload -----------------------------------------------------------------------


def cluster_events() -> list[Event]:
    """The workspace, and each node registered with a ready replica of it and heartbeating."""
    events: list[Event] = [
        workspace_registered(
            WORKSPACE, replicas_min=len(NODES), replicas_max=len(NODES), concurrency=CONCURRENCY
        )
    ]
    for node_id in NODES:
        dep = f"dep-{node_id}"
        events += [
            node_registered(node_id),
            DeploymentRequested(
                deployment_id=dep, node_id=node_id, workspace_id=WORKSPACE, image="img:1",
                command=("serve",), ports=(PORT,), gpu_type="RTX4090", gpu_count=1,
            ),
            DeploymentStarting(deployment_id=dep, node_id=node_id, workspace_id=WORKSPACE),
            DeploymentReady(
                deployment_id=dep, node_id=node_id, workspace_id=WORKSPACE,
                host_ports={str(PORT): 30000},
            ),
            NodeHeartbeat(node_id=node_id),
        ]  # fmt: skip
    return events


def backlog(count: int, batch: int) -> list[list[Outgoing]]:
    """`count` submissions, encoded, in batches of `batch`."""
    records = []
    for i in range(count):
        envelope = Envelope(submitted(f"task-{i:06d}", WORKSPACE))
        records.append(Outgoing(envelope.topic, envelope.key, encode(envelope)))
    return [records[i : i + batch] for i in range(0, len(records), batch)]


async def heartbeats(bus: Bus) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY_S)
        await publish_events(bus, [NodeHeartbeat(node_id=node_id) for node_id in NODES])


class Dispatches:
    """Reads the tasks topic from the beginning and keeps, per task id, when this reader
    received its first `TaskDispatched` (wall time) and how many it got."""

    def __init__(self, bus: Bus) -> None:
        self.consumer = bus.consumer([topics.TASKS], start="earliest")
        self.at: dict[str, float] = {}
        self.counts: Counter[str] = Counter()

    async def run(self) -> None:
        while True:
            records = await self.consumer.fetch(1000, timeout_s=0.2)
            now = time.time()
            for record in records:
                if DISPATCHED in record.value:
                    self.counts[record.key] += 1
                    self.at.setdefault(record.key, now)

    async def until(self, condition: Callable[[], bool], scheduler: Scheduler, what: str) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            scheduler.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what}")
            await asyncio.sleep(0.01)

    def times(self, ids: Sequence[str]) -> list[float]:
        twice = [task_id for task_id in ids if self.counts[task_id] > 1]
        if twice:
            raise AssertionError(f"{len(twice)} tasks dispatched more than once, e.g. {twice[0]}")
        return sorted(self.at[task_id] for task_id in ids)


# -- the schedulers ---------------------------------------------------------------------


class Scheduler(Protocol):
    started: float
    """Wall time at which it was started."""

    async def start(self) -> None: ...

    def check(self) -> None:
        """Raise if it died."""
        ...

    def leading_at(self) -> float | None:
        """Wall time its leadership term began (when it started, for the embedded runner)."""
        ...

    async def stop(self) -> None: ...


class EmbeddedScheduler:
    """`SchedulerRunner` on the embedded bus, in this event loop."""

    def __init__(self, settings: Settings, bus: Bus) -> None:
        self.bus, self.settings = bus, settings
        self.started = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.started = time.time()
        self._task = asyncio.create_task(SchedulerRunner(self.bus, self.settings).run())

    def check(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()
            raise RuntimeError("the scheduler runner returned")

    def leading_at(self) -> float | None:
        return self.started

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _LeadingLine(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.at is None and LEADING in record.getMessage():
            self.at = record.created


class InProcessFaust:
    """`run_scheduler_app` in this event loop."""

    LOGGER = logging.getLogger("services.scheduler.distributed.leadership")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = 0.0
        self._stopping = asyncio.Event()
        self._lines = _LeadingLine()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.LOGGER.setLevel(logging.INFO)
        self.LOGGER.addHandler(self._lines)
        self.started = time.time()
        self._task = asyncio.create_task(run_scheduler_app(self.settings, self._stopping))

    def check(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()
            raise RuntimeError("the scheduler app returned")

    def leading_at(self) -> float | None:
        return self._lines.at

    async def stop(self) -> None:
        self._stopping.set()
        try:
            if self._task is not None:
                await asyncio.wait_for(self._task, 60)
        finally:
            self.LOGGER.removeHandler(self._lines)


class ChildScheduler:
    """`python -m services.cli serve --roles scheduler` with the settings in its environment."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        env = {f"NGPU_{name.upper()}": str(value) for name, value in SETTINGS.items()}
        env.update(
            NGPU_BUS="kafka", NGPU_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
            NGPU_KAFKA_NAMESPACE=settings.kafka_namespace, NGPU_DATA_DIR=str(settings.data_dir),
            NGPU_LOG_LEVEL="info",
        )  # fmt: skip
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.started = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.started = time.time()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: ASYNC220 - the spawn is what is timed
                [sys.executable, "-m", "services.cli", "serve", "--roles", "scheduler"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def check(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the scheduler exited ({self._process.returncode}):\n{tail}")

    def leading_at(self) -> float | None:
        # `ngpu serve` logs "%(asctime)s ..." in local time, to the millisecond.
        for line in self.log_path.read_text(errors="replace").splitlines():
            if LEADING in line:
                return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return None

    async def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


# -- the passes ---------------------------------------------------------------------------


@dataclass
class Result:
    leading_s: float  # scheduler start -> its leadership term began
    ready_s: float  # start -> probe dispatched (steady) / first dispatch (backlog)
    first_to_last_s: float  # first to last dispatch of the measured tasks
    elapsed_s: float  # what decisions/s is computed from
    decisions: int
    submit_s: float | None = None  # steady: publishing the tasks took

    @property
    def rate(self) -> float:
        return self.decisions / self.elapsed_s


async def run_pass(
    settings: Settings,
    make_scheduler: Callable[[Settings, Bus], Scheduler],
    batches: list[list[Outgoing]],
    steady: bool,
) -> Result:
    """One pass on a fresh log (a fresh data dir or Kafka namespace in `settings`)."""
    bus = bus_from_settings(settings)
    await bus.start()
    scheduler = make_scheduler(settings, bus)
    dispatches = Dispatches(bus)
    helpers: list[asyncio.Task[None]] = []
    try:
        await publish_events(bus, cluster_events())
        await dispatches.consumer.start()
        if not steady:
            for batch in batches:
                await bus.publish_many(batch)
        helpers += [
            asyncio.create_task(dispatches.run()),
            asyncio.create_task(heartbeats(bus)),
        ]
        ids = [record.key for batch in batches for record in batch]
        await scheduler.start()
        if steady:
            await publish_events(bus, [submitted(PROBE, WORKSPACE)])
            await dispatches.until(lambda: PROBE in dispatches.at, scheduler, "the probe")
            ready = dispatches.at[PROBE] - scheduler.started
            t0 = time.time()
            for batch in batches:
                await bus.publish_many(batch)
            submit_s = time.time() - t0
        await dispatches.until(
            lambda: len(dispatches.at) >= len(ids) + steady, scheduler, "every dispatch"
        )
        await asyncio.sleep(1.0)  # time for a second dispatch of a task to show up
        times = dispatches.times(ids)
        leading = scheduler.leading_at()
        assert leading is not None, "dispatched without leading?"
        if steady:
            return Result(
                leading - scheduler.started, ready, times[-1] - times[0], times[-1] - t0,
                len(ids), submit_s,
            )  # fmt: skip
        return Result(
            leading - scheduler.started, times[0] - scheduler.started, times[-1] - times[0],
            times[-1] - leading, len(ids),
        )  # fmt: skip
    finally:
        try:
            await scheduler.stop()
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await dispatches.consumer.close()
            await bus.close()


PASSES = (("backlog", False), ("steady", True))


async def passes(
    settings_for: Callable[[str], Settings],
    make_scheduler: Callable[[Settings, Bus], Scheduler],
    batches: list[list[Outgoing]],
    repeat: int,
) -> dict[str, Result]:
    """One backlog pass to warm up (discarded: the broker's JIT, the codec's first use),
    then `repeat` of each pass; the run with the median decision rate of each."""
    await run_pass(settings_for("warmup"), make_scheduler, batches, steady=False)
    runs: dict[str, list[Result]] = {name: [] for name, _ in PASSES}
    for i in range(repeat):
        for name, steady in PASSES:
            settings = settings_for(f"{name}-{i}")
            runs[name].append(await run_pass(settings, make_scheduler, batches, steady))
    return {
        name: sorted(found, key=lambda r: r.rate)[len(found) // 2] for name, found in runs.items()
    }


async def embedded_passes(
    tmp: Path, batches: list[list[Outgoing]], repeat: int
) -> dict[str, Result]:
    def settings_for(name: str) -> Settings:
        return load_settings(data_dir=tmp / f"embedded-{name}", **SETTINGS)

    # The runner shares this process's bus, as the roles of `ngpu up` do.
    return await passes(settings_for, EmbeddedScheduler, batches, repeat)


async def kafka_passes(
    tmp: Path, bootstrap: str, batches: list[list[Outgoing]], repeat: int, where: str
) -> dict[str, Result]:
    def settings_for(name: str) -> Settings:
        return load_settings(
            bus="kafka", kafka_bootstrap=bootstrap, kafka_namespace=f"b{uuid.uuid4().hex[:10]}.",
            data_dir=tmp / f"kafka-{name}", **SETTINGS,
        )  # fmt: skip

    def make(settings: Settings, bus: Bus) -> Scheduler:
        if where == "child":
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            return ChildScheduler(settings, settings.data_dir / "scheduler.log")
        return InProcessFaust(settings)

    return await passes(settings_for, make, batches, repeat)


# -- the report ---------------------------------------------------------------------------


def rows(results: dict[str, dict[str, Result]], tasks: int) -> list[tuple[str, str, str]]:
    def each(fmt: Callable[[Result], str], name: str) -> tuple[str, str]:
        embedded, kafka = results["embedded"][name], results["kafka"][name]
        return fmt(embedded), fmt(kafka)

    def secs(value: float) -> str:
        return f"{value:.2f} s"

    def submit_rate(r: Result) -> str:
        return f"{r.decisions / r.submit_s:,.0f} /s" if r.submit_s else "-"

    table = [
        ("backlog drain: scheduler start to leadership term start",
         *each(lambda r: secs(r.leading_s), "backlog")),
        (f"backlog drain: start to first dispatch (replay of {tasks:,} submissions)",
         *each(lambda r: secs(r.ready_s), "backlog")),
        ("backlog drain: first to last dispatch",
         *each(lambda r: secs(r.first_to_last_s), "backlog")),
        ("backlog drain: term start to last dispatch",
         *each(lambda r: secs(r.elapsed_s), "backlog")),
        ("**backlog drain: decisions/s** (from the term start)",
         *each(lambda r: f"**{r.rate:,.0f}**", "backlog")),
        ("steady: scheduler start to leadership term start",
         *each(lambda r: secs(r.leading_s), "steady")),
        ("steady: scheduler start to a probe task dispatched",
         *each(lambda r: secs(r.ready_s), "steady")),
        (f"steady: {tasks:,} submissions published at", *each(submit_rate, "steady")),
        ("steady: first submission to last dispatch", *each(lambda r: secs(r.elapsed_s), "steady")),
        ("**steady: decisions/s**", *each(lambda r: f"**{r.rate:,.0f}**", "steady")),
    ]  # fmt: skip
    return [(name, e, k) for name, e, k in table]


async def run_all(args: argparse.Namespace, tmp: Path) -> dict[str, dict[str, Result]]:
    batches = backlog(args.tasks, args.batch)
    results = {"embedded": await embedded_passes(tmp, batches, args.repeat)}
    broker = KafkaBroker.start_in(tmp / "kafka")
    try:
        results["kafka"] = await kafka_passes(
            tmp, broker.bootstrap, batches, args.repeat, args.kafka_scheduler
        )
    finally:
        broker.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kafka-scheduler", choices=("child", "inprocess"), default="child")
    args = parser.parse_args()
    # A new topic's partitions can refuse the first produce for a moment (retried).
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        results = _run_loop(run_all(args, Path(tmp)))
    where = {
        "child": "`ngpu serve --roles scheduler` in a child process",
        "inprocess": "`run_scheduler_app` in the bench's event loop",
    }[args.kafka_scheduler]
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; {args.tasks:,} tasks in batches of {args.batch}, "
        f"{len(NODES)} nodes x {CONCURRENCY} slots; embedded runner in-process, "
        f"Kafka scheduler: {where}"
    )
    print()
    print("| measure | embedded | kafka |")
    print("|---|---:|---:|")
    for name, embedded, kafka in rows(results, args.tasks):
        print(f"| {name} | {embedded} | {kafka} |")


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    """On uvloop when installed, as `ngpu up` and `ngpu serve` run."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":
    main()
