"""Scheduler takeover on Kafka (issue 12, "Living long"): how long the system stops
dispatching when its scheduler leader is stopped (SIGTERM) or dies (SIGKILL), with a long
history in the log against none.

The system under test: a Kafka broker from compose/kafka (`KafkaBroker`, one KRaft JVM),
and `ngpu serve` child processes as in bench_kafka.py: ingress+projector (chdb), two
dispatchers, two scheduler workers (one faust group: one leads, one stands by), and one
node agent running the sample app (one replica of concurrency 64). Everything goes
through the system's own API:

1. history (`--tasks N`): async tasks with 1 KB bodies
   (`POST /user/schedulingTask?paramUrl=echo`, the Workspace ID as bearer; from wrk when
   installed, else aiohttp), in chunks so the backlog stays under `--backlog`, waited for
   until all completed (the projections' usage count); then, with `--nodes`, that many
   fake nodes registered (GPU type A100: no replica lands there) and heartbeated for
   `--heartbeat-s`; then a wait until the scheduler's checkpoint was written after all
   that (the takeover should load it, not replay the log).
2. a steady trickle of sync calls (`POST /user/echo`, `--trickle-rate` a second, open
   loop) runs from then on, and the bench follows the tasks topic from its end (every
   `TaskSubmitted`, `TaskDispatched`, `TaskCompleted` with its `occurred_at`);
3. SIGTERM of the leader, timed from the signal: the old leader's exit; the standby's
   "scheduler: leading" line; its "resuming from the checkpoint" line
   (services/checkpoints/fold.py) and its "scheduler: caught up, x of y records" line
   (services/bus/progress.py: y is the tail it read after the checkpoint); its first
   dispatch; the first sync call sent after the signal, dispatched and answered; and the
   longest gaps between two dispatches and between two answered sync calls;
4. the old leader started again (it joins as a standby, which moves the group through a
   rebalance: timed the same way, from its spawn), then settled;
5. the same with SIGKILL of whichever worker leads then, and its restart.

Before each signal the leader's term has run `--settle-s` unchanged (default 1.5
checkpoint intervals, so it has saved a checkpoint) and served a sync call. Each row
prints the workers' log lines of the takeover (faust's and aiokafka's group membership,
the checkpoint, the catch-up) with their times after the signal; a Markdown table ends
the run. Every wait has a deadline (`--guard-s` per takeover, `--build-budget-s` for the
history); the children and the broker are stopped at the end, also on failure or SIGTERM.

Run: .venv/bin/python bench/bench_takeover.py [--tasks 0] [--build-budget-s 0] [--nodes 0]
     [--heartbeat-s 0] [--trickle-rate 20] [--checkpoint-interval-s 30] [--settle-s S]
     [--signals SIGTERM,SIGKILL] [--env NGPU_X=VALUE] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_restart import HEARTBEATS_LUA, PAYLOAD, TASKS_LUA, run_wrk  # noqa: E402

from events import TaskCompleted, TaskDispatched, TaskSubmitted, topics  # noqa: E402
from services.bus import Bus, bus_from_settings, decode_record  # noqa: E402
from services.bus.topology import checkpoint_topic  # noqa: E402
from services.checkpoints.snapshot import header_of  # noqa: E402
from services.scheduler.runner import CHECKPOINT  # noqa: E402
from services.settings import Settings, load_settings  # noqa: E402
from tests.e2e.cluster import (  # noqa: E402
    JOIN_TOKEN,
    Cluster,
    cluster_env,
    sample_workspace,
    wait_for,
)
from tests.support.kafka import KafkaBroker  # noqa: E402

SCHEDULERS = 2
WORKSPACE = sample_workspace(name="bench-echo", replicas={"min": 1, "max": 1}, concurrency=64)
TASK_ID_HEADER = "X-NGPU-Task-ID"
EVENT_TYPES = {TaskSubmitted: "submitted", TaskDispatched: "dispatched", TaskCompleted: "done"}
TIMELINE = ("faust", "aiokafka", "mode", "services")
"""Loggers whose lines of the new leader make the takeover's timeline."""
TIMELINE_SKIP = ("Fetcher", "Heartbeat", "Producer", "Commit", "Finished", "Starting...")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): (.*)$")
_CAUGHT_UP = re.compile(r"scheduler: caught up, (\d+) of (\d+) records")
_RESUMED = re.compile(r"scheduler: resuming from the checkpoint of (\S+)")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the scheduler workers ---------------------------------------------------------------


@dataclass
class Line:
    at: float
    level: str
    logger: str
    message: str


@dataclass
class Scheduler:
    """One `ngpu serve --roles scheduler` process and its log (a new log per start)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    spawned_at: float

    def lines(self) -> list[Line]:
        found = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            match = _STAMP.match(raw)
            if match:
                stamp, level, logger, message = match.groups()
                at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                found.append(Line(at, level, logger, message))
        return found

    def leadership(self) -> list[tuple[float, str]]:
        marks = []
        for line in self.lines():
            for state in ("leading", "standing by"):
                if line.message.startswith(f"scheduler: {state}"):
                    marks.append((line.at, state))
        return marks

    def state(self) -> str | None:
        if self.process.poll() is not None:
            return None
        marks = self.leadership()
        return marks[-1][1] if marks else None

    def led_since(self) -> float | None:
        """The start of its current term (it leads now), else None."""
        marks = self.leadership()
        if self.process.poll() is None and marks and marks[-1][1] == "leading":
            return marks[-1][0]
        return None

    def first(self, pattern: re.Pattern[str] | str, after: float) -> Line | None:
        for line in self.lines():
            if line.at >= after and (
                re.search(pattern, line.message) if isinstance(pattern, re.Pattern)
                else line.message.startswith(pattern)
            ):  # fmt: skip
                return line
        return None


# -- the trickle of sync calls and the tail of the tasks topic -----------------------------


@dataclass
class Call:
    sent: float
    done: float
    ok: bool
    task_id: str
    status: str
    """The HTTP status and result_code, or the exception's name."""


@dataclass
class Probe:
    """In a thread of its own: sync calls at `rate` a second (open loop), and a follower
    of the tasks topic from its end recording, per task, when it was submitted,
    dispatched and completed (`occurred_at`) and how often each attempt was dispatched."""

    base: str
    workspace_id: str
    settings: Settings
    rate: float
    calls: list[Call] = field(default_factory=list)
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)
    dispatch_times: list[float] = field(default_factory=list)
    dispatches: Counter[tuple[str, int]] = field(default_factory=Counter)
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _started: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)
        self._thread.start()
        if not self._started.wait(60) or self._error is not None:
            raise SystemExit(f"the probe did not start: {self._error!r}")

    def stop(self) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has ended already
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=150)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start(), or by the next check
            self._error = exc
            self._started.set()

    async def _main(self) -> None:
        import aiohttp

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        bus = bus_from_settings(self.settings)
        await bus.start()
        try:
            consumer = bus.consumer([topics.TASKS], group=None, start="latest")
            async with consumer:
                await consumer.start()
                connector = aiohttp.TCPConnector(limit=0)
                timeout = aiohttp.ClientTimeout(total=120)
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                    self._started.set()
                    jobs = [asyncio.create_task(self._trickle(http)),
                            asyncio.create_task(self._follow(consumer))]  # fmt: skip
                    await self._stop.wait()
                    for job in jobs:
                        job.cancel()
                    for job in jobs:
                        with contextlib.suppress(asyncio.CancelledError):
                            await job
        finally:
            await bus.close()

    async def _trickle(self, http: Any) -> None:
        url = f"{self.base}/user/echo"
        headers = {"Authorization": f"Bearer {self.workspace_id}"}
        body = orjson.dumps({"data": PAYLOAD})
        pending: set[asyncio.Task[None]] = set()

        async def one() -> None:
            sent = time.time()
            ok, task_id = False, ""
            try:
                async with http.post(url, data=body, headers=headers) as answer:
                    payload = await answer.read()
                    task_id = answer.headers.get(TASK_ID_HEADER, "")
                    code = orjson.loads(payload).get("result_code") if payload else None
                    ok = answer.status == 200 and code == 200
                    status = f"{answer.status}/{code}"
            except (OSError, TimeoutError, ValueError) as exc:
                status = type(exc).__name__
            except Exception as exc:  # aiohttp.ClientError and kin
                if type(exc).__module__.split(".")[0] != "aiohttp":
                    raise
                status = type(exc).__name__
            self.calls.append(Call(sent, time.time(), ok, task_id, status))

        began = time.monotonic()
        n = 0
        try:
            while True:
                await asyncio.sleep(max(0.0, began + n / self.rate - time.monotonic()))
                n += 1
                call = asyncio.create_task(one())
                pending.add(call)
                call.add_done_callback(pending.discard)
        finally:
            for call in list(pending):
                call.cancel()

    async def _follow(self, consumer: Any) -> None:
        while True:
            for record in await consumer.fetch(1000, timeout_s=0.5):
                envelope = decode_record(record)
                event = envelope.event
                kind = EVENT_TYPES.get(type(event))
                if kind is None:
                    continue
                at = envelope.occurred_at.timestamp()
                self.tasks.setdefault(envelope.key, {}).setdefault(kind, at)
                if isinstance(event, TaskDispatched):
                    self.dispatch_times.append(at)
                    self.dispatches[(event.task_id, event.attempt)] += 1

    def check(self) -> None:
        if self._error is not None:
            raise SystemExit(f"the probe failed: {self._error!r}")


# -- measurements -------------------------------------------------------------------------


@dataclass
class CheckpointView:
    """The scheduler's newest checkpoint as seen from outside, against the log's ends."""

    written_at: float
    size: int
    tail: dict[str, int]
    offsets: dict[str, int]

    def describe(self, now: float) -> str:
        tail = ", ".join(f"{t.removeprefix('ngpu.')} {n:,}" for t, n in self.tail.items() if n)
        log = ", ".join(f"{t.removeprefix('ngpu.')} {n:,}" for t, n in self.offsets.items() if n)
        return (f"checkpoint {self.size / 1e3:,.0f} kB written {now - self.written_at:.1f} s "
                f"ago; after it: {sum(self.tail.values()):,} records ({tail or 'none'}); "
                f"the log's offsets: {log}")  # fmt: skip


async def _checkpoint_view(bus: Bus) -> CheckpointView | None:
    topic = checkpoint_topic(CHECKPOINT)
    async with bus.consumer([topic], group=None, start="latest") as probe:
        ends = {p: end for p, end in (await probe.ends()).items() if end > 0}
    if not ends:
        return None
    raw = b""
    last = {p: end - 1 for p, end in ends.items()}
    async with bus.consumer([topic], group=None, start="latest", positions=last) as reader:
        deadline = time.monotonic() + 30
        while not raw and time.monotonic() < deadline:
            for record in await reader.fetch(10, timeout_s=2.0):
                raw = record.value
    header = header_of(raw)
    if not header:
        return None
    positions = {(str(t), int(p)): int(o) for t, p, o in header["positions"]}
    async with bus.consumer(topics.ALL_TOPICS, group=None, start="latest") as everything:
        log_ends = await everything.ends()
    tail: Counter[str] = Counter()
    offsets: Counter[str] = Counter()
    for (name, partition), end in log_ends.items():
        tail[name] += max(0, end - positions.get((name, partition), 0))
        offsets[name] += end
    written = datetime.fromisoformat(header["written_at"]).timestamp()
    return CheckpointView(written, len(raw), dict(tail), dict(offsets))


def checkpoint_view(settings: Settings) -> CheckpointView | None:
    async def run() -> CheckpointView | None:
        bus = bus_from_settings(settings)
        await bus.start()
        try:
            return await _checkpoint_view(bus)
        finally:
            await bus.close()

    return asyncio.run(run())


@dataclass
class Takeover:
    history: str
    event: str
    loadavg: str
    checkpoint: str
    figures: dict[str, float | None]
    notes: dict[str, Any]
    timeline: list[tuple[float, str]]


def longest_gap(times: list[float], since: float, until: float) -> tuple[float, float]:
    """The longest interval between consecutive `times` (sorted) around [since, until],
    counting from the last one before `since`; (length, its start relative to `since`)."""
    times = sorted(times)
    before = [t for t in times if t < since]
    window = ([before[-1]] if before else [since]) + [t for t in times if since <= t <= until]
    best, start = 0.0, since
    for a, b in itertools.pairwise(window):
        if b - a > best:
            best, start = b - a, a
    return best, start - since


# -- the bench ----------------------------------------------------------------------------


class Bench:
    def __init__(self, root: Path, broker: KafkaBroker, args: argparse.Namespace) -> None:
        self.root = root
        self.args = args
        extra = {
            "NGPU_RATE_LIMIT_PER_S": "0", "NGPU_NODE_REGISTER_RATE_PER_S": "0",
            "NGPU_LOG_LEVEL": "warning", "NGPU_CHECKPOINT_INTERVAL_S":
            str(args.checkpoint_interval_s),
            # The system's defaults, not the e2e tests' short ones.
            "NGPU_HEARTBEAT_INTERVAL_S": "2", "NGPU_NODE_LOST_AFTER_S": "15",
            "NGPU_SCHEDULER_TICK_S": "0.5",
        }  # fmt: skip
        extra.update(item.split("=", 1) for item in args.env)
        self.env = cluster_env(broker.bootstrap, **extra)
        self.scheduler_env = {**self.env, "NGPU_LOG_LEVEL": "info"}
        settings = {k.removeprefix("NGPU_").lower(): v for k, v in self.env.items()
                    if k.startswith("NGPU_") and k != "NGPU_LOG_LEVEL"}  # fmt: skip
        settings["data_dir"] = str(root / "probe")
        self.settings = load_settings(**settings)
        (root / "cluster").mkdir()
        self.cluster = Cluster(root / "cluster", self.env, schedulers=0)
        self.schedulers: list[Scheduler] = []
        self.starts: Counter[str] = Counter()
        self.workspace_id = ""
        self.probe: Probe | None = None

    @property
    def url(self) -> str:
        return self.cluster.url

    # -- processes

    def spawn_scheduler(self, name: str) -> Scheduler:
        self.starts[name] += 1
        log_path = self.cluster.data_dir / f"{name}.{self.starts[name]}.log"
        args = [sys.executable, "-m", "services.cli", "serve", "--roles", "scheduler",
                "--data-dir", str(self.cluster.data_dir / name)]  # fmt: skip
        with log_path.open("wb") as log:
            spawned_at = time.time()
            process = subprocess.Popen(
                args, env=self.scheduler_env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.cluster.processes.append(process)  # stopped with the cluster
        worker = Scheduler(name, process, log_path, spawned_at)
        self.schedulers = [s for s in self.schedulers if s.name != name] + [worker]
        return worker

    def start(self) -> None:
        self.cluster.start_control_plane()
        for n in range(1, SCHEDULERS + 1):
            self.spawn_scheduler(f"scheduler-{n}")
        self.settled(3, check_serving=False)
        self.cluster.start_node("bench")
        created = httpx.post(f"{self.url}/v1/workspaces", json=WORKSPACE,
                             headers=self.cluster.admin(), timeout=30)  # fmt: skip
        created.raise_for_status()
        self.workspace_id = str(created.json()["workspace_id"])

        def ready() -> bool:
            return any(d["workspace_id"] == self.workspace_id and d["state"] == "ready"
                       for n in self.cluster.nodes() for d in n["deployments"])  # fmt: skip

        wait_for(ready, 120, "the replica to be ready")

    def leader(self) -> Scheduler | None:
        """The one live worker leading while every other live one stands by, else None."""
        live = [s for s in self.schedulers if s.process.poll() is None]
        states = [s.state() for s in live]
        leading = [s for s, state in zip(live, states, strict=True) if state == "leading"]
        if len(leading) == 1 and None not in states:
            return leading[0]
        return None

    def echo(self, timeout_s: float = 60) -> tuple[bool, float]:
        """One sync call; (answered 200, when it was answered)."""
        try:
            answer = httpx.post(
                f"{self.url}/user/echo", json={"data": PAYLOAD}, timeout=timeout_s,
                headers={"Authorization": f"Bearer {self.workspace_id}"},
            )  # fmt: skip
        except httpx.HTTPError:
            return False, time.time()
        code = answer.json().get("result_code") if answer.content else None
        return answer.status_code == 200 and code == 200, time.time()

    def settled(self, then_s: float, check_serving: bool = True, guard_s: float = 180) -> Scheduler:
        """Until one worker leads, the other stands by, and (`check_serving`) a sync call
        sent after its term began is answered; then `then_s` more, and again."""
        deadline = time.monotonic() + guard_s
        while time.monotonic() < deadline:
            leader = self.leader()
            began = leader.led_since() if leader else None
            if leader is None or began is None:
                time.sleep(0.2)
                continue
            if check_serving and not self.echo()[0]:
                continue
            time.sleep(then_s)
            if self.leader() is leader and leader.led_since() == began:
                return leader
        raise SystemExit(f"the schedulers did not settle within {guard_s:.0f} s; see "
                         f"{self.cluster.data_dir}")  # fmt: skip

    def stop(self) -> None:
        if self.probe is not None:
            self.probe.stop()
        self.cluster.stop()

    # -- history

    def completed(self) -> int:
        rows = httpx.get(f"{self.url}/v1/analytics/usage", headers=self.cluster.admin(),
                         timeout=60).json()["rows"]  # fmt: skip
        return sum(int(row["tasks"]) for row in rows)

    def submit(self, count: int) -> tuple[int, int]:
        url = f"{self.url}/user/schedulingTask?paramUrl=echo"
        if shutil.which("wrk"):
            flag = self.root / "wrk-done"
            script = TASKS_LUA % {"payload": PAYLOAD, "workspace": self.workspace_id,
                                  "count": count, "flag": flag}  # fmt: skip
            total, bad, _ = run_wrk(script, url, self.args.clients, 3600, flag)
            return total, bad
        return count, asyncio.run(_aiohttp_posts(url, self.workspace_id, count, self.args.clients))

    def build_tasks(self) -> dict[str, float]:
        args = self.args
        before = self.completed()
        sent = refused = 0
        began = last_report = time.monotonic()
        while sent < args.tasks:
            if args.build_budget_s and time.monotonic() - began > args.build_budget_s:
                print(f"  ! the build budget of {args.build_budget_s:.0f} s is spent: "
                      f"{sent:,} tasks, not {args.tasks:,}", flush=True)  # fmt: skip
                break
            total, bad = self.submit(min(args.chunk, args.tasks - sent))
            sent += total - bad
            refused += bad
            done = self.completed() - before
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                took = last_report - began
                print(f"  tasks: {sent:,} accepted ({refused:,} refused), {done:,} completed, "
                      f"{took:.0f} s, {done / took:,.0f} completed/s, load {loadavg()}",
                      flush=True)  # fmt: skip
            self.wait_completed(before, sent, sent - (args.backlog - args.chunk))
        self.wait_completed(before, sent, sent)
        took = time.monotonic() - began
        print(f"  tasks: {sent:,} completed in {took:.0f} s ({sent / max(took, 1e-9):,.0f}/s); "
              f"{refused:,} refused", flush=True)  # fmt: skip
        return {"tasks": sent, "refused": refused, "seconds": took, "rate": sent / took}

    def wait_completed(self, before: int, sent: int, wanted: int) -> None:
        """Until `wanted` of the tasks sent are completed; fails after 120 s without one."""
        done = self.completed() - before
        stalled, seen = time.monotonic(), done
        while done < wanted:
            time.sleep(1.0)
            done = self.completed() - before
            if done != seen:
                stalled, seen = time.monotonic(), done
            elif time.monotonic() - stalled > 120:
                raise SystemExit(f"no task completed for 120 s ({done:,} of {sent:,})")

    def heartbeats(self) -> dict[str, float]:
        nodes = asyncio.run(_register(self.url, self.args.nodes))
        ids = {node_id for node_id, _ in nodes}
        wait_for(lambda: ids <= {n["node_id"] for n in self.cluster.nodes()}, 120,
                 "the fake nodes in the directory")  # fmt: skip
        if not shutil.which("wrk"):
            raise SystemExit("--nodes needs wrk (apt-get install wrk)")
        table = ",".join(f'{{"{node_id}","{token}"}}' for node_id, token in nodes)
        total, bad, took = run_wrk(HEARTBEATS_LUA % {"nodes": table}, self.url,
                                   self.args.clients, self.args.heartbeat_s)  # fmt: skip
        print(f"  heartbeats: {total - bad:,} from {len(nodes):,} nodes in {took:.0f} s "
              f"({(total - bad) / took:,.0f}/s; {bad:,} refused)", flush=True)  # fmt: skip
        return {"heartbeats": total - bad, "seconds": took, "ended_at": time.time()}

    def wait_checkpoint(self, since: float) -> CheckpointView | None:
        """Until the scheduler's checkpoint was written after `since` (wall clock) with
        little after it, or three intervals and a bit."""
        deadline = time.monotonic() + 3 * self.args.checkpoint_interval_s + 60
        view = None
        while time.monotonic() < deadline:
            view = checkpoint_view(self.settings)
            if view and view.written_at > since and sum(view.tail.values()) < 5000:
                break
            time.sleep(2.0)
        return view

    # -- takeovers

    def takeover(self, history: str, how: str) -> list[Takeover]:
        leader = self.settled(self.args.settle_s)
        assert self.probe is not None
        view = checkpoint_view(self.settings)
        load = loadavg()
        t0 = time.time()
        seen = view.describe(t0) if view else "no checkpoint"
        print(f"\n{history}: {how} of {leader.name} (pid {leader.process.pid}); {seen}; "
              f"load {load}", flush=True)  # fmt: skip
        exited: list[float] = []

        def wait_exit() -> None:
            leader.process.wait()
            exited.append(time.time())

        waiter = threading.Thread(target=wait_exit)
        leader.process.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
        waiter.start()
        standby = next(s for s in self.schedulers if s is not leader)
        figures, notes, timeline = self.measure(t0, standby)
        waiter.join(timeout=120)
        figures["old leader exited"] = exited[0] - t0 if exited else None
        if how == "SIGTERM":
            notes["old leader's exit code"] = leader.process.returncode
        figures["checkpoint's age"] = t0 - view.written_at if view else None
        result = Takeover(history, how, load, seen, figures, notes, timeline)
        print_takeover(result)
        # The old leader comes back as a standby: that rebalance is measured too.
        t1 = time.time()
        self.spawn_scheduler(leader.name)
        figures, notes, timeline = self.measure(t1, standby)
        # The spawn is not a signal: calls sent just after it are not waiting for anything.
        figures["first call after the signal dispatched"] = None
        figures["first call after the signal answered"] = None
        figures["checkpoint's age"] = None
        rejoin = Takeover(history, f"{leader.name} restarted after {how}", loadavg(), "",
                          figures, notes, timeline)  # fmt: skip
        print_takeover(rejoin)
        return [result, rejoin]

    def measure(
        self, t0: float, standby: Scheduler
    ) -> tuple[dict[str, float | None], dict[str, Any], list[tuple[float, str]]]:
        """Until some worker leads (a term begun after `t0`), has caught up and dispatched,
        and a sync call sent after `t0` was answered; then `--after-s` more."""
        assert self.probe is not None
        probe = self.probe
        deadline = time.monotonic() + self.args.guard_s
        leader: Scheduler | None = None
        while True:
            probe.check()
            if time.monotonic() > deadline:
                raise SystemExit(f"no takeover within {self.args.guard_s:.0f} s; see "
                                 f"{self.cluster.data_dir}")  # fmt: skip
            time.sleep(0.1)
            leader = self.leader()
            began = leader.led_since() if leader else None
            if leader is None or began is None or began < t0:
                continue
            answered = [c for c in probe.calls if c.sent > t0 and c.ok]
            dispatched = [t for t in probe.dispatch_times if t > began]
            if answered and dispatched:
                break
        time.sleep(self.args.after_s)
        until = time.time()
        began = leader.led_since() or t0
        caught = leader.first(_CAUGHT_UP, began)
        resumed = leader.first(_RESUMED, began)
        replayed = leader.first(re.compile("replaying|unreadable|could not be loaded"), began)
        calls = sorted(probe.calls, key=lambda c: c.done)
        first_call = min((c for c in calls if c.sent > t0), key=lambda c: c.sent)
        first_task = probe.tasks.get(first_call.task_id, {})
        after = [t for t in probe.dispatch_times if t > began]
        dispatch_gap, dispatch_gap_at = longest_gap(probe.dispatch_times, t0, until)
        answer_gap, answer_gap_at = longest_gap([c.done for c in calls if c.ok], t0, until)
        figures: dict[str, float | None] = {
            "new term began": began - t0,
            "checkpoint loaded": resumed.at - t0 if resumed else None,
            "caught up": caught.at - t0 if caught else None,
            "first dispatch of the term": min(after) - t0 if after else None,
            "first call after the signal dispatched":
                first_task["dispatched"] - t0 if "dispatched" in first_task else None,
            "first call after the signal answered":
                first_call.done - t0 if first_call.ok else None,
            "longest gap between dispatches": dispatch_gap,
            "longest gap between answered calls": answer_gap,
        }  # fmt: skip
        notes: dict[str, Any] = {
            "leader": leader.name + (" (the one that rejoined)" if leader is not standby else ""),
            "gap starts at": f"dispatches {dispatch_gap_at:+.2f} s, answers {answer_gap_at:+.2f} s",
            "failed calls sent in the window": dict(
                Counter(c.status for c in probe.calls if t0 - 1 <= c.sent <= until and not c.ok)
            ),
            "first call after the signal": f"{first_call.status} after "
            f"{first_call.done - first_call.sent:.2f} s",
            "attempts dispatched twice (whole run so far)": sum(
                1 for n in probe.dispatches.values() if n > 1
            ),
        }
        if resumed:
            written = _RESUMED.search(resumed.message)
            if written:
                age = t0 - datetime.fromisoformat(written.group(1)).timestamp()
                notes["checkpoint's age at the signal"] = f"{age:.1f} s"
        if caught:
            match = _CAUGHT_UP.search(caught.message)
            notes["tail read after the checkpoint"] = caught.message.split(", ", 1)[1]
            if match and not resumed:
                notes["tail read after the checkpoint"] += " (no checkpoint loaded!)"
        if replayed:
            notes["checkpoint trouble"] = replayed.message[:200]
        timeline = [
            (line.at - t0, f"{line.logger.split('.')[-1]}: {line.message[:150]}")
            for worker in self.schedulers
            for line in worker.lines()
            if t0 - 0.5 <= line.at <= (caught.at if caught else until) + 0.5
            and line.logger.startswith(TIMELINE)
            and not any(skip in line.message for skip in TIMELINE_SKIP)
        ]  # fmt: skip
        return figures, notes, sorted(timeline)


async def _aiohttp_posts(url: str, workspace_id: str, count: int, clients: int) -> int:
    """Without wrk: `count` POSTs from `clients` connections; how many were not 2xx."""
    import aiohttp

    headers = {"Authorization": f"Bearer {workspace_id}", "Content-Type": "application/json"}
    body = orjson.dumps({"data": PAYLOAD})
    left = iter(range(count))
    bad = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:

        async def worker() -> None:
            nonlocal bad
            for _ in left:
                async with http.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    bad += answer.status >= 300

        await asyncio.gather(*(worker() for _ in range(clients)))
    return bad


async def _register(base: str, count: int) -> list[tuple[str, str]]:
    headers = {"Authorization": f"Bearer {JOIN_TOKEN}"}
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base, headers=headers, trust_env=False) as http:

        async def one(n: int) -> tuple[str, str]:
            body = {"address": "0x" + f"{n:040x}", "host": "127.0.0.1", "region": "fake",
                    "gpus": [{"type": "A100", "memory_mb": 81920}]}  # fmt: skip
            async with limit:
                answer = await http.post("/v1/nodes/register", json=body, timeout=60)
            answer.raise_for_status()
            return answer.json()["node_id"], answer.json()["token"]

        return list(await asyncio.gather(*(one(n) for n in range(1, count + 1))))


# -- output -------------------------------------------------------------------------------


def secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def print_takeover(t: Takeover) -> None:
    print(f"\n{t.history}, {t.event} (load {t.loadavg}):")
    for name, value in t.figures.items():
        print(f"    {name}: {secs(value)}")
    for name, value in t.notes.items():
        if isinstance(value, list):
            print(f"    {name}:")
            for item in value:
                print(f"        {item}")
        else:
            print(f"    {name}: {value}")
    print("    timeline (seconds after the signal; the workers' faust, aiokafka and ngpu lines):")
    for at, message in t.timeline:
        print(f"    {at:+8.3f}  {message}")
    sys.stdout.flush()


COLUMNS = (
    ("checkpoint's age", "checkpoint's age"),
    ("old leader exited", "old leader gone"),
    ("new term began", "new term"),
    ("checkpoint loaded", "checkpoint loaded"),
    ("caught up", "caught up"),
    ("first dispatch of the term", "first dispatch"),
    ("first call after the signal dispatched", "first call after: dispatched"),
    ("first call after the signal answered", "answered"),
    ("longest gap between dispatches", "no dispatch for"),
    ("longest gap between answered calls", "no sync answer for"),
)


def summary(results: list[Takeover], built: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; checkpoint interval {args.checkpoint_interval_s:g} s; "
          f"trickle {args.trickle_rate:g} sync calls/s")  # fmt: skip
    if "tasks" in built:
        t = built["tasks"]
        print(f"History: {t['tasks']:,} tasks in {t['seconds']:.0f} s ({t['rate']:,.0f}/s "
              f"submitted and completed)")  # fmt: skip
    if "heartbeats" in built:
        hb = built["heartbeats"]
        print(f"Heartbeats: {hb['heartbeats']:,} from {args.nodes:,} nodes in "
              f"{hb['seconds']:.0f} s")  # fmt: skip
    print("Times from the signal; the restart rows: from the old leader's new spawn (it joins "
          "the group as a standby, which restarts the leader's term).\n")  # fmt: skip
    print("| history | event | " + " | ".join(title for _, title in COLUMNS)
          + " | tail read | load avg |")  # fmt: skip
    print("|---|---|" + "---:|" * len(COLUMNS) + "---|---|")
    for r in results:
        cells = [secs(r.figures.get(key)) for key, _ in COLUMNS]
        tail = str(r.notes.get("tail read after the checkpoint", "-")).split(" (")[0]
        tail = re.sub(r"\d+", lambda m: f"{int(m.group()):,}", tail)
        print(f"| {r.history} | {r.event} | " + " | ".join(cells) + f" | {tail} | {r.loadavg} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=0, help="async tasks of history")
    parser.add_argument("--chunk", type=int, default=20_000, help="tasks per wrk run")
    parser.add_argument("--backlog", type=int, default=40_000, help="most tasks not completed")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--build-budget-s", type=float, default=0,
                        help="stop submitting after this long (0: no limit)")  # fmt: skip
    parser.add_argument("--nodes", type=int, default=0, help="fake nodes that heartbeat")
    parser.add_argument("--heartbeat-s", type=float, default=0)
    parser.add_argument("--trickle-rate", type=float, default=20, help="sync calls a second")
    parser.add_argument("--checkpoint-interval-s", type=float, default=30)
    parser.add_argument("--settle-s", type=float, default=0,
                        help="the leader's term this long unchanged before a signal "
                             "(default: 1.5 checkpoint intervals: it has saved one)")  # fmt: skip
    parser.add_argument("--after-s", type=float, default=3,
                        help="measure this long after the takeover has served")  # fmt: skip
    parser.add_argument("--guard-s", type=float, default=180, help="longest wait per takeover")
    parser.add_argument("--signals", default="SIGTERM,SIGKILL")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data dirs")
    parser.add_argument("--env", action="append", default=[], metavar="NGPU_X=VALUE",
                        help="another setting of the system under test (repeatable)")  # fmt: skip
    args = parser.parse_args()
    args.settle_s = args.settle_s or 1.5 * args.checkpoint_interval_s
    # A SIGTERM (`timeout`, say) unwinds through the `finally`s that stop everything.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    root = Path(tempfile.mkdtemp(prefix="bench-takeover-"))
    print(f"logs and data under {root}; load {loadavg()}", flush=True)
    history = f"{args.tasks:,} tasks" if args.tasks else "fresh"
    if args.nodes and args.heartbeat_s:
        history += f", {args.nodes:,} nodes heartbeating {args.heartbeat_s:.0f} s"
    results: list[Takeover] = []
    built: dict[str, Any] = {}
    broker: KafkaBroker | None = None
    bench: Bench | None = None
    try:
        broker = KafkaBroker.start_in(root / "kafka")
        bench = Bench(root, broker, args)
        bench.start()
        print(f"started; load {loadavg()}", flush=True)
        quiet = time.time()
        if args.tasks:
            built["tasks"] = bench.build_tasks()
            quiet = time.time()
        if args.nodes and args.heartbeat_s:
            built["heartbeats"] = bench.heartbeats()
            quiet = built["heartbeats"]["ended_at"] + 20  # the fake nodes are lost by then
            time.sleep(max(0.0, quiet - time.time()))
        if args.tasks or args.nodes:
            view = bench.wait_checkpoint(quiet)
            print(f"  {view.describe(time.time()) if view else 'no checkpoint'}", flush=True)
        bench.probe = Probe(bench.url, bench.workspace_id, bench.settings, args.trickle_rate)
        bench.probe.start()
        for how in args.signals.split(","):
            results += bench.takeover(history, how.strip())
    finally:
        if bench is not None:
            bench.stop()
        if broker is not None:
            broker.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    summary(results, built, args)


if __name__ == "__main__":
    main()
