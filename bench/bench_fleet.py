"""A fleet simulator: the real control plane (`ngpu up`, embedded, in a child process)
with N simulated node agents in this process, under an open-loop load that steps
low -> high -> low requests/s, with a share of the nodes dying mid-run.

The simulated nodes speak the real agent protocol over HTTP on 127.0.0.1: each registers
with the join token (its own 0x address, `--gpus-per-node` GPUs), heartbeats at the
interval the control plane answers (the default, 2 s), long-polls its assignments, and for
each assigned deployment reports `starting`, waits `--cold-start` seconds, then reports
`ready` with a host port. The protocol client is the real agent's
(`services.nodeagent.control.ControlPlaneClient`), over one shared aiohttp connection pool
(an httpx transport): 1,000 httpx pools would cost more CPU than the control plane.

Every replica of every node is one listening socket of ONE aiohttp server in this
process (a port per replica: the dispatcher's call names neither the deployment nor the
node, only the task, so the port is what tells replicas apart). A call is checked as the
real proxy checks it (`services.callsign.verify` under the deployment's secret from the
assignment, and a replay guard), then answered after `--service` seconds. A dead node's
ports are closed (new calls are refused) and a call that was in flight on it is aborted
(the connection reset) when its service time ends: the node neither heartbeats nor
answers any more.

The load: async `schedulingTask` submissions on a fixed schedule (open loop: sent on
time whatever the answers), `--low-rate` for `--low-s`, `--high-rate` for `--high-s`,
`--low-rate` again for `--down-s`; `--churn` of the nodes (those holding replicas
first in proportion, picked at random) die `--churn-at` seconds after the step up.
Afterwards the bench waits for every task to end, then reads the embedded log
(`bus.sqlite3`, read-only) for the envelope times of `TaskSubmitted`, `TaskDispatched`,
the ends, and `ReplicasScaled`.

Measured per `--bucket` (5 s) by submission time: queue delay (first `TaskDispatched`
minus `TaskSubmitted`) p50/p99; replicas ready (the simulated nodes' view) and wanted
(`ReplicasScaled`); GPU-seconds busy (calls served), idle (ready and not busy) and
starting (assigned, cold-starting). Tasks lost: submitted (a taskID answered) and never
ended. Prints a table and one JSON line; `--series` keeps the series for `--png`.

Run: .venv/bin/python bench/bench_fleet.py [--nodes 100] [--gpus-per-node 4]
     [--png bench/fleet.png --plot-with /tmp/fleet-other.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from aiohttp import web
from yarl import URL

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from events import GpuInfo  # noqa: E402
from services.callsign import PROXY_ERROR_HEADER, ReplayGuard, verify  # noqa: E402
from services.nodeagent.control import ControlPlaneClient  # noqa: E402
from services.nodeagent.errors import ControlPlaneError  # noqa: E402
from services.nodeagent.runtimes.base import Assignment, StatusReport  # noqa: E402

ADMIN = "bench"
JOIN = "bench-join"
GPU_TYPE = "RTX4090"
POLL_WAIT_S = 25.0
"""The real agent's long-poll wait."""
_SKIP_REQUEST_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "accept-encoding"}
)
_SKIP_RESPONSE_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- the control plane -------------------------------------------------------------------


def start_gateway(
    data_dir: Path, port: int, dispatcher_concurrency: int
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    env.update(
        NGPU_RATE_LIMIT_PER_S="0",
        NGPU_ADMIN_TOKEN=ADMIN,
        NGPU_NODE_JOIN_TOKEN=JOIN,
        NGPU_LOG_LEVEL="warning",
        # Every simulated node registers from 127.0.0.1: no per-IP registration limit.
        NGPU_NODE_REGISTER_RATE_PER_S="0",
        NGPU_DISPATCHER_CONCURRENCY=str(dispatcher_concurrency),
    )
    log = (data_dir / "up.log").open("wb")
    args = [
        sys.executable,
        "-m",
        "services.cli",
        "up",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the simulated nodes -----------------------------------------------------------------


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent through one shared aiohttp session (`aclose` leaves it open:
    every simulated node's client shares it)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        read_s = timeout.get("read") or 30.0
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in _SKIP_REQUEST_HEADERS
        }
        body = await request.aread()
        try:
            async with self.session.request(
                request.method, URL(str(request.url), encoded=True), headers=headers,
                data=body or None, timeout=aiohttp.ClientTimeout(total=read_s + 5),
            ) as response:  # fmt: skip
                content = await response.read()
                kept = [(k, v) for k, v in response.headers.items()
                        if k.lower() not in _SKIP_RESPONSE_HEADERS]  # fmt: skip
                return httpx.Response(response.status, headers=kept, content=content,
                                      request=request)  # fmt: skip
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise httpx.TransportError(f"{type(exc).__name__}: {exc}", request=request) from exc

    async def aclose(self) -> None:
        pass


@dataclass(eq=False)
class Replica:
    deployment_id: str
    node: FakeNode
    secret: str
    ports: tuple[int, ...]
    assigned_at: float
    ready_at: float | None = None
    ended_at: float | None = None
    dead: bool = False
    port: int = 0
    site: web.SockSite | None = None
    in_flight: int = 0
    bring_up: asyncio.Task[None] | None = None


@dataclass
class Calls:
    """Every call the simulated replicas served (or had cut short by a death)."""

    busy: list[tuple[float, float]] = field(default_factory=list)
    served: int = 0
    cut: int = 0
    refused_dead: int = 0
    bad_signature: int = 0


class ReplicaServer:
    """One aiohttp server; each replica is one listening socket of it."""

    def __init__(self, service_s: float, check_signatures: bool) -> None:
        self.service_s = service_s
        self.check_signatures = check_signatures
        self.by_port: dict[int, Replica] = {}
        self.replays = ReplayGuard()
        self.calls = Calls()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self) -> None:
        await self.runner.setup()

    async def open(self, replica: Replica) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        replica.port = int(sock.getsockname()[1])
        replica.site = web.SockSite(self.runner, sock)
        self.by_port[replica.port] = replica
        await replica.site.start()
        return replica.port

    async def close(self, replica: Replica) -> None:
        site, replica.site = replica.site, None
        if site is not None:
            with contextlib.suppress(Exception):
                await site.stop()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport else None
        replica = self.by_port.get(int(sockname[1])) if sockname else None
        if replica is None or replica.dead:
            self.calls.refused_dead += 1
            if transport is not None:
                transport.abort()
            return web.Response(status=503)  # never written: the connection is gone
        if self.check_signatures and not (
            verify(replica.secret, request.method, request.raw_path, request.headers)
            and self.replays.first_use(request.headers)
        ):
            self.calls.bad_signature += 1
            return web.Response(status=401, text="unauthorized\n",
                                headers={PROXY_ERROR_HEADER: "unauthorized"})  # fmt: skip
        await request.read()
        started = time.time()
        replica.in_flight += 1
        try:
            await asyncio.sleep(self.service_s)
        finally:
            replica.in_flight -= 1
        ended = time.time()
        if replica.dead:  # it died during the call: the caller sees the connection reset
            self.calls.cut += 1
            self.calls.busy.append((started, replica.ended_at or ended))
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        self.calls.busy.append((started, ended))
        self.calls.served += 1
        return web.json_response({"ok": True, "deployment": replica.deployment_id})

    async def aclose(self) -> None:
        await self.runner.cleanup()


class FakeNode:
    """One simulated node agent (see the module docstring)."""

    def __init__(self, index: int, fleet: Fleet) -> None:
        self.index = index
        self.fleet = fleet
        self.client = ControlPlaneClient(fleet.url, JOIN, transport=fleet.transport)
        self.node_id = ""
        self.replicas: dict[str, Replica] = {}
        self.dead = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def address(self) -> str:
        return "0x" + f"{self.index + 1:040x}"

    async def register(self) -> None:
        gpus = tuple(GpuInfo(GPU_TYPE, 24_576) for _ in range(self.fleet.gpus_per_node))
        for attempt in range(20):
            try:
                registration = await self.client.register(
                    address=self.address, host="127.0.0.1", gpus=gpus, region="",
                    runtime="process",
                )  # fmt: skip
                break
            except ControlPlaneError as exc:
                if exc.status is not None and exc.status < 500 and exc.status != 429:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        else:
            raise SystemExit(f"node {self.index} could not register")
        self.node_id = registration.node_id
        self.interval_s = registration.heartbeat_interval_s

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._heartbeats()),
            asyncio.create_task(self._assignments()),
        ]

    async def _heartbeats(self) -> None:
        await asyncio.sleep(random.uniform(0, self.interval_s))  # spread the fleet's beats
        while True:
            began = time.monotonic()
            try:
                await self.client.heartbeat()
            except ControlPlaneError:
                self.fleet.errors["heartbeat"] += 1
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))

    async def _assignments(self) -> None:
        etag = ""
        while True:
            try:
                current = await self.client.assignments(etag, wait_s=POLL_WAIT_S if etag else 0.0)
            except ControlPlaneError:
                self.fleet.errors["assignments"] += 1
                await asyncio.sleep(1.0)
                continue
            await self._reconcile(current.deployments)
            etag = current.etag

    async def _reconcile(self, desired: tuple[Assignment, ...]) -> None:
        wanted = {a.deployment_id: a for a in desired}
        for deployment_id in [d for d in self.replicas if d not in wanted]:
            await self._stop(self.replicas.pop(deployment_id))
        for deployment_id, spec in wanted.items():
            if deployment_id not in self.replicas:
                replica = Replica(deployment_id, self, spec.secret, spec.ports, time.time())
                self.replicas[deployment_id] = replica
                self.fleet.replicas.append(replica)
                replica.bring_up = asyncio.create_task(self._bring_up(replica))
                self._tasks.append(replica.bring_up)

    async def _bring_up(self, replica: Replica) -> None:
        await self._report(StatusReport(replica.deployment_id, self.node_id, "starting", attempt=1))
        await asyncio.sleep(self.fleet.cold_start_s)
        port = await self.fleet.server.open(replica)
        replica.ready_at = time.time()
        ports = {str(p): port for p in replica.ports}
        await self._report(StatusReport(replica.deployment_id, self.node_id, "ready", attempt=1,
                                        host_ports=ports))  # fmt: skip

    async def _stop(self, replica: Replica) -> None:
        if replica.bring_up is not None and not replica.bring_up.done():
            replica.bring_up.cancel()
        replica.ended_at = time.time()
        await self.fleet.server.close(replica)
        await self._report(StatusReport(replica.deployment_id, self.node_id, "stopped",
                                        reason="no longer assigned"))  # fmt: skip

    async def _report(self, report: StatusReport) -> None:
        for _ in range(10):
            try:
                await self.client.report(report)
                return
            except ControlPlaneError as exc:
                self.fleet.errors["report"] += 1
                if exc.status is not None and exc.status < 500:
                    return
                await asyncio.sleep(1.0)

    async def kill(self) -> None:
        """The node dies: no more heartbeats, polls or reports; its ports close."""
        self.dead = True
        for task in self._tasks:
            task.cancel()
        now = time.time()
        for replica in self.replicas.values():
            replica.dead = True
            if replica.ended_at is None:
                replica.ended_at = now
            await self.fleet.server.close(replica)

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class Fleet:
    def __init__(self, url: str, args: argparse.Namespace, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.gpus_per_node = args.gpus_per_node
        self.cold_start_s = args.cold_start
        self.transport = AiohttpTransport(session)
        self.server = ReplicaServer(args.service, not args.no_verify)
        self.nodes = [FakeNode(i, self) for i in range(args.nodes)]
        self.replicas: list[Replica] = []
        self.errors: dict[str, int] = defaultdict(int)

    def ready_now(self) -> int:
        return sum(1 for r in self.replicas if r.ready_at is not None and r.ended_at is None)

    async def register_all(self, parallel: int = 32) -> None:
        gate = asyncio.Semaphore(parallel)

        async def one(node: FakeNode) -> None:
            async with gate:
                await node.register()
            node.start()

        await asyncio.gather(*(one(n) for n in self.nodes))

    async def churn(self, share: float, rng: random.Random) -> list[FakeNode]:
        alive = [n for n in self.nodes if not n.dead]
        victims = rng.sample(alive, max(1, round(share * len(self.nodes))))
        for node in victims:
            await node.kill()
        return victims


# --- the load ---------------------------------------------------------------------------


@dataclass
class Load:
    sent: dict[str, float] = field(default_factory=dict)
    """taskID -> when the submission was sent (unix s)."""
    refused: int = 0
    client_errors: int = 0
    offered: int = 0


async def submit_load(
    session: aiohttp.ClientSession, url: str, workspace_id: str,
    phases: list[tuple[float, float]], began: float, load: Load,
) -> None:  # fmt: skip
    """Open loop: the n-th submission of a phase is sent at its time, whatever became of
    the earlier ones."""
    headers = {"Authorization": f"Bearer {workspace_id}"}
    endpoint = f"{url}/user/schedulingTask?paramUrl=run"
    pending: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        at = time.time()
        try:
            async with session.post(endpoint, json={"data": {"n": n}}, headers=headers) as answer:
                body = await answer.read()
                if answer.status != 202:
                    load.refused += 1
                    return
        except (aiohttp.ClientError, TimeoutError):
            load.client_errors += 1
            return
        load.sent[orjson.loads(body)["taskID"]] = at

    start = 0.0
    n = 0
    for rate, seconds in phases:
        count = int(rate * seconds)
        for i in range(count):
            due = began + start + i / rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
            load.offered += 1
        start += seconds
    if pending:
        await asyncio.gather(*pending)


# --- reading the log --------------------------------------------------------------------


def _when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class LogView:
    submitted: dict[str, float] = field(default_factory=dict)
    first_dispatch: dict[str, float] = field(default_factory=dict)
    ended: dict[str, tuple[float, str]] = field(default_factory=dict)
    dispatches: int = 0
    retryable_failures: int = 0
    failure_codes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    scaled: list[tuple[float, int, str]] = field(default_factory=list)
    node_lost: list[float] = field(default_factory=list)


def read_log(bus_path: Path, workspace_id: str) -> LogView:
    view = LogView()
    conn = sqlite3.connect(f"file:{bus_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT value FROM records WHERE topic IN ('ngpu.tasks', 'ngpu.workspaces', "
            "'ngpu.nodes') ORDER BY seq"
        )
        for (value,) in rows:
            doc = orjson.loads(value)
            kind, data = doc["type"], doc["data"]
            if kind == "TaskSubmitted":
                view.submitted[data["task_id"]] = _when(doc["occurred_at"])
            elif kind == "TaskDispatched":
                view.dispatches += 1
                view.first_dispatch.setdefault(data["task_id"], _when(doc["occurred_at"]))
            elif kind == "TaskCompleted":
                view.ended.setdefault(data["task_id"], (_when(doc["occurred_at"]), "completed"))
            elif kind == "TaskFailed":
                view.failure_codes[data["code"]] += 1
                if data["retryable"]:
                    view.retryable_failures += 1
                else:
                    view.ended.setdefault(data["task_id"], (_when(doc["occurred_at"]), "failed"))
            elif kind in ("TaskExpired", "TaskCancelled"):
                end = (_when(doc["occurred_at"]), kind.removeprefix("Task").lower())
                view.ended.setdefault(data["task_id"], end)
            elif kind == "ReplicasScaled" and data["workspace_id"] == workspace_id:
                view.scaled.append((_when(doc["occurred_at"]), data["replicas"], data["reason"]))
            elif kind == "NodeLost":
                view.node_lost.append(_when(doc["occurred_at"]))
    finally:
        conn.close()
    return view


def count_ended(bus_path: Path, task_ids: set[str]) -> int:
    conn = sqlite3.connect(f"file:{bus_path}?mode=ro", uri=True, timeout=30)
    ended: set[str] = set()
    try:
        for (value,) in conn.execute("SELECT value FROM records WHERE topic = 'ngpu.tasks'"):
            doc = orjson.loads(value)
            kind = doc["type"]
            terminal = kind in ("TaskCompleted", "TaskExpired", "TaskCancelled") or (
                kind == "TaskFailed" and not doc["data"]["retryable"]
            )
            if terminal:
                ended.add(doc["data"]["task_id"])
    finally:
        conn.close()
    return len(task_ids & ended)


# --- the measures -----------------------------------------------------------------------


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def spread(intervals: list[tuple[float, float]], t0: float, bucket: float, n: int) -> list[float]:
    """Seconds of the intervals falling in each of `n` buckets from `t0`."""
    out = [0.0] * n
    for start, end in intervals:
        first = max(0, int((start - t0) // bucket))
        last = min(n - 1, int((end - t0) // bucket))
        for i in range(first, last + 1):
            out[i] += overlap(start, end, t0 + i * bucket, t0 + (i + 1) * bucket)
    return out


def measure(args: argparse.Namespace, began: float, end_at: float, fleet: Fleet, load: Load,
            view: LogView, churn_at: float | None) -> dict[str, Any]:  # fmt: skip
    bucket = args.bucket
    n = int((end_at - began) // bucket)
    step_up = began + args.low_s
    step_down = step_up + args.high_s
    # Queue delay by submission time.
    delays: list[list[float]] = [[] for _ in range(n)]
    never_dispatched = 0
    for task_id in load.sent:
        submitted = view.submitted.get(task_id)
        if submitted is None:
            continue
        dispatched = view.first_dispatch.get(task_id)
        i = int((submitted - began) // bucket)
        if not 0 <= i < n:
            continue
        if dispatched is None:
            never_dispatched += 1
            delays[i].append(math.inf)
        else:
            delays[i].append(dispatched - submitted)
    # GPU time, by replica lifetimes and calls.
    ready_iv, starting_iv = [], []
    for r in fleet.replicas:
        end = r.ended_at if r.ended_at is not None else end_at
        if r.ready_at is not None:
            starting_iv.append((r.assigned_at, r.ready_at))
            ready_iv.append((r.ready_at, end))
        else:
            starting_iv.append((r.assigned_at, end))
    ready_s = spread(ready_iv, began, bucket, n)
    starting_s = spread(starting_iv, began, bucket, n)
    busy_s = spread(fleet.server.calls.busy, began, bucket, n)
    idle_s = [max(0.0, r - b) for r, b in zip(ready_s, busy_s, strict=True)]
    submitted_per = [0] * n
    for at in load.sent.values():
        i = int((at - began) // bucket)
        if 0 <= i < n:
            submitted_per[i] += 1

    def wanted_at(t: float) -> int | None:
        last = None
        for when, replicas, _ in view.scaled:
            if when <= t:
                last = replicas
        return last

    series = []
    for i in range(n):
        t = i * bucket
        d = delays[i]
        series.append({
            "t": t,
            "submitted_per_s": submitted_per[i] / bucket,
            "delay_p50": quantile(d, 0.50), "delay_p99": quantile(d, 0.99),
            "replicas_ready": ready_s[i] / bucket,
            "replicas_starting": starting_s[i] / bucket,
            "replicas_wanted": wanted_at(began + t + bucket),
            "gpu_busy_s": busy_s[i], "gpu_idle_s": idle_s[i], "gpu_starting_s": starting_s[i],
        })  # fmt: skip
    limit = 2 * args.target
    # Scale up: from the step, the first bucket from which every bucket's p99 is under
    # 2x the target until the churn (or the step down).
    until = churn_at if churn_at is not None else step_down
    window = [s for s in series if step_up <= began + s["t"] and began + s["t"] + bucket <= until]
    recovered = None
    for k, s in enumerate(window):
        if all(w["delay_p99"] < limit for w in window[k:]):
            recovered = began + s["t"] - step_up
            break
    # Scale down: the first ReplicasScaled down after the step down, and when the ready
    # replicas reached it.
    ready_at_down = fleet_ready_at(fleet, step_down)
    decision = next(((w, r) for w, r, _ in view.scaled if w >= step_down), None)
    down_done = None
    idle_after = None
    if decision is not None:
        down_done = first_time_ready_at_most(fleet, decision[0], decision[1], end_at)
        if down_done is not None:
            iv = [(max(s, step_down), min(e, down_done)) for s, e in ready_iv
                  if e > step_down and s < down_done]  # fmt: skip
            ready_total = sum(e - s for s, e in iv)
            busy_total = sum(
                overlap(s, e, step_down, down_done) for s, e in fleet.server.calls.busy
            )
            idle_after = ready_total - busy_total
    # Churn: tasks dispatched to the dead nodes (retried).
    ended = view.ended
    kinds: dict[str, int] = defaultdict(int)
    lost = 0
    for task_id in load.sent:
        end = ended.get(task_id)
        if end is None:
            lost += 1
        else:
            kinds[end[1]] += 1
    high = [s for s in series if step_up <= began + s["t"] < step_down]
    all_delays = [x for d in delays for x in d]
    summary = {
        "nodes": args.nodes,
        "gpus_per_node": args.gpus_per_node,
        "cold_start_s": args.cold_start,
        "service_s": args.service,
        "target_s": args.target,
        "replicas_min": args.min_replicas,
        "replicas_max": args.max_replicas,
        "scale_up_after_s": args.scale_up_after,
        "scale_down_after_s": args.scale_down_after,
        "rates": [args.low_rate, args.high_rate, args.low_rate],
        "phases_s": [args.low_s, args.high_s, args.down_s],
        "offered": load.offered,
        "accepted": len(load.sent),
        "refused": load.refused,
        "client_errors": load.client_errors,
        "ended": dict(kinds),
        "lost": lost,
        "never_dispatched": never_dispatched,
        "dispatches": view.dispatches,
        "retryable_failures": view.retryable_failures,
        "failure_codes": dict(view.failure_codes),
        "delay_p50_s": quantile(all_delays, 0.5),
        "delay_p99_s": quantile(all_delays, 0.99),
        "high_phase_delay_p99_max_s": max((s["delay_p99"] for s in high), default=math.nan),
        "time_to_scale_up_s": recovered,
        "scale_up_target_met": recovered is not None and recovered <= 60,
        "replicas_ready_at_step_down": ready_at_down,
        "scale_down_decision_after_s": None if decision is None else decision[0] - step_down,
        "scale_down_to": None if decision is None else decision[1],
        "time_to_scale_down_s": None if down_done is None else down_done - step_down,
        "idle_gpu_s_after_step_down": idle_after,
        "idle_expected_gpu_s": args.scale_down_after * ready_at_down,
        "idle_ratio": (
            None
            if idle_after is None or not ready_at_down
            else idle_after / (args.scale_down_after * ready_at_down)
        ),
        "gpu_busy_s": sum(busy_s),
        "gpu_idle_s": sum(idle_s),
        "gpu_starting_s": sum(starting_s),
        "peak_ready": max((s["replicas_ready"] for s in series), default=0),
        "replicas_started": len(fleet.replicas),
        "replicas_never_ready": sum(1 for r in fleet.replicas if r.ready_at is None),
        "calls_served": fleet.server.calls.served,
        "calls_cut_by_death": fleet.server.calls.cut,
        "calls_refused_dead": fleet.server.calls.refused_dead,
        "bad_signatures": fleet.server.calls.bad_signature,
        "node_lost_events": len(view.node_lost),
        "agent_errors": dict(fleet.errors),
        "scaled": [(w - began, r, why) for w, r, why in view.scaled],
        "churn_at_s": None if churn_at is None else churn_at - began,
    }
    return {"summary": summary, "series": series}


def fleet_ready_at(fleet: Fleet, t: float) -> int:
    return sum(1 for r in fleet.replicas if r.ready_at is not None and r.ready_at <= t
               and (r.ended_at is None or r.ended_at > t))  # fmt: skip


def first_time_ready_at_most(fleet: Fleet, after: float, count: int, end_at: float) -> float | None:
    """The first moment from `after` at which at most `count` replicas are ready."""
    ends = {r.ended_at for r in fleet.replicas if r.ended_at is not None}
    moments = sorted({after} | {t for t in ends if after <= t <= end_at})
    for t in moments:
        if fleet_ready_at(fleet, t) <= count:
            return t
    return None


# --- the run ----------------------------------------------------------------------------


def wait_until(probe: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def workspace_body(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": "fleet",
        "image": "bench/fake:1",
        "command": ["fake"],
        "gpu": {"type": GPU_TYPE, "count": 1},
        "ports": [8080],
        "replicas": {"min": args.min_replicas, "max": args.max_replicas},
        "timeout_s": 60,
        "concurrency": 1,
        "scaling": {
            "metric": "queue_delay",
            "target": args.target,
            "scale_up_after_s": args.scale_up_after,
            "scale_down_after_s": args.scale_down_after,
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    loadavg_start = os.getloadavg()
    gateway = start_gateway(data_dir, port, args.dispatcher_concurrency)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, force_close=False)
    session = aiohttp.ClientSession(connector=connector, trust_env=False)
    load_connector = aiohttp.TCPConnector(limit=128)
    load_session = aiohttp.ClientSession(connector=load_connector, trust_env=False,
                                         timeout=aiohttp.ClientTimeout(total=60))  # fmt: skip
    fleet = Fleet(url, args, session)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    rng = random.Random(args.seed)
    try:
        await asyncio.to_thread(
            wait_until, lambda: httpx.get(f"{url}/readyz").status_code == 200, 120, "the gateway"
        )
        await fleet.server.start()
        t = time.monotonic()
        await fleet.register_all()
        print(f"{args.nodes} nodes registered in {time.monotonic() - t:.1f} s", flush=True)
        async with httpx.AsyncClient(base_url=url, headers=admin, timeout=30) as http:
            created = await http.post("/v1/workspaces", json=workspace_body(args))
            created.raise_for_status()
            workspace_id = created.json()["workspace_id"]
            t = time.monotonic()
            while fleet.ready_now() < args.min_replicas:
                if time.monotonic() - t > args.cold_start + 120:
                    raise SystemExit("the minimum replicas never became ready")
                await asyncio.sleep(0.5)
            print(f"{args.min_replicas} replica(s) ready in {time.monotonic() - t:.1f} s",
                  flush=True)  # fmt: skip
            # Let a few heartbeats' worth of state settle before the clock starts.
            await asyncio.sleep(3)
            phases = [(args.low_rate, args.low_s), (args.high_rate, args.high_s),
                      (args.low_rate, args.down_s)]  # fmt: skip
            load = Load()
            cpu0 = (process_cpu_s(gateway.pid), self_cpu_s())
            began = time.time() + 0.5
            step_up = began + args.low_s
            churn_at: float | None = None
            loader = asyncio.create_task(
                submit_load(load_session, url, workspace_id, phases, began, load)
            )
            total_s = args.low_s + args.high_s + args.down_s
            next_report = began
            while not loader.done():
                now = time.time()
                if args.churn > 0 and churn_at is None and now >= step_up + args.churn_at:
                    victims = await fleet.churn(args.churn, rng)
                    churn_at = time.time()
                    held = sum(1 for v in victims for r in v.replicas.values()
                               if r.ready_at is not None)  # fmt: skip
                    print(f"  churn: {len(victims)} nodes died ({held} ready replicas on them)",
                          flush=True)  # fmt: skip
                if now >= next_report:
                    in_flight = sum(r.in_flight for r in fleet.replicas if r.ended_at is None)
                    print(f"  t={now - began:6.1f}s of {total_s:g}: submitted {len(load.sent)}"
                          f" (refused {load.refused}), replicas ready {fleet.ready_now()},"
                          f" calls in flight {in_flight}, load {os.getloadavg()[0]:.2f}",
                          flush=True)  # fmt: skip
                    next_report += 10
                await asyncio.sleep(0.25)
            await loader
            load_end = time.time()
            cpu1 = (process_cpu_s(gateway.pid), self_cpu_s())
            # Wait for every accepted task to end.
            bus = data_dir / "bus.sqlite3"
            ids = set(load.sent)
            deadline = time.monotonic() + args.drain_s
            ended = 0
            while time.monotonic() < deadline:
                ended = await asyncio.to_thread(count_ended, bus, ids)
                if ended >= len(ids):
                    break
                print(f"  draining: {ended} of {len(ids)} tasks ended", flush=True)
                await asyncio.sleep(5)
            status = (await http.get(f"/v1/workspaces/{workspace_id}")).json()
        view = await asyncio.to_thread(read_log, bus, workspace_id)
        result = measure(args, began, load_end, fleet, load, view, churn_at)
        result["summary"]["workspace_scaling"] = status.get("scaling")
        result["summary"]["cpu_s"] = {
            "gateway": cpu1[0] - cpu0[0], "bench": cpu1[1] - cpu0[1],
            "wall": load_end - began,
        }  # fmt: skip
        result["summary"]["loadavg_start"] = loadavg_start
        result["summary"]["loadavg_end"] = os.getloadavg()
        result["summary"]["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, "
                                        f"Python {platform.python_version()}")  # fmt: skip
        return result
    finally:
        for node in fleet.nodes:
            await node.shutdown()
        await fleet.server.aclose()
        await session.close()
        await load_session.close()
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            try:
                gateway.wait(timeout=60)
            except subprocess.TimeoutExpired:
                gateway.kill()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"data dir kept: {data_dir}")


# --- the report -------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def print_report(result: dict[str, Any]) -> None:
    s = result["summary"]
    print()
    print("| t (s) | req/s | delay p50 (s) | delay p99 (s) | ready | starting | wanted |"
          " GPU-s busy | GPU-s idle |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in result["series"]:
        print(f"| {row['t']:.0f} | {row['submitted_per_s']:.0f} | {fmt(row['delay_p50'], 2)} |"
              f" {fmt(row['delay_p99'], 2)} | {row['replicas_ready']:.0f} |"
              f" {row['replicas_starting']:.0f} | {fmt(row['replicas_wanted'])} |"
              f" {row['gpu_busy_s']:.0f} | {row['gpu_idle_s']:.0f} |")  # fmt: skip
    print()
    for key, value in s.items():
        if key != "scaled":
            print(f"{key}: {value}")
    print("scaling decisions (s from load start, replicas, reason):")
    for when, replicas, why in s["scaled"]:
        print(f"  {when:7.1f}  {replicas:4d}  {why}")
    line = {k: v for k, v in s.items() if k != "scaled"}
    print(json.dumps(line, default=str))


def finite(value: float | None) -> float:
    """NaN for a missing or infinite value (orjson writes NaN and infinity as null)."""
    return value if value is not None and math.isfinite(value) else math.nan


def plot(paths: list[Path], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [orjson.loads(p.read_bytes()) for p in paths]
    fig, axes = plt.subplots(2, len(runs), figsize=(7 * len(runs), 7), sharex="col",
                             squeeze=False)  # fmt: skip
    for col, result in enumerate(runs):
        s, series = result["summary"], result["series"]
        t = [row["t"] for row in series]
        step_up = s["phases_s"][0]
        step_down = step_up + s["phases_s"][1]
        top, bottom = axes[0][col], axes[1][col]
        top.plot(t, [row["replicas_ready"] for row in series], label="replicas ready")
        top.plot(t, [row["replicas_starting"] for row in series], label="replicas starting",
                 linestyle=":")  # fmt: skip
        wanted = [row["replicas_wanted"] for row in series]
        top.step(t, [w if w is not None else math.nan for w in wanted], where="post",
                 label="replicas wanted (ReplicasScaled)", linestyle="--")  # fmt: skip
        top.plot(t, [row["submitted_per_s"] for row in series], label="load (req/s)",
                 color="grey", alpha=0.6)  # fmt: skip
        top.set_ylabel("replicas / req/s")
        top.set_title(f"{s['nodes']} nodes x {s['gpus_per_node']} GPU, cold start "
                      f"{s['cold_start_s']:g} s, service {s['service_s']:g} s")  # fmt: skip
        p99 = [finite(row["delay_p99"]) for row in series]
        p50 = [finite(row["delay_p50"]) for row in series]
        bottom.plot(t, p99, label="queue delay p99")
        bottom.plot(t, p50, label="queue delay p50")
        bottom.axhline(2 * s["target_s"], color="red", linestyle="--", linewidth=0.8,
                       label=f"2x target ({2 * s['target_s']:g} s)")  # fmt: skip
        bottom.set_yscale("symlog", linthresh=1)
        bottom.set_ylim(bottom=0)
        bottom.set_ylabel("seconds (by submission time)")
        bottom.set_xlabel("seconds since load start (5 s buckets)")
        for ax in (top, bottom):
            ax.axvline(step_up, color="black", linewidth=0.8)
            ax.axvline(step_down, color="black", linewidth=0.8)
            ax.axvspan(step_up, step_up + 60, color="green", alpha=0.07)
            if s.get("churn_at_s") is not None:
                ax.axvline(s["churn_at_s"], color="purple", linestyle=":", linewidth=1.2,
                           label="10% of nodes die")  # fmt: skip
            ax.legend(fontsize=7, loc="upper right")
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--gpus-per-node", type=int, default=4)
    parser.add_argument("--cold-start", type=float, default=20.0)
    parser.add_argument("--service", type=float, default=1.0)
    parser.add_argument("--low-rate", type=float, default=10.0)
    parser.add_argument("--high-rate", type=float, default=200.0)
    parser.add_argument("--low-s", type=float, default=60.0)
    parser.add_argument("--high-s", type=float, default=120.0)
    parser.add_argument("--down-s", type=float, default=120.0)
    parser.add_argument("--churn", type=float, default=0.10, help="share of nodes that die")
    parser.add_argument("--churn-at", type=float, default=80.0,
                        help="seconds after the step up")  # fmt: skip
    parser.add_argument("--min-replicas", type=int, default=2)
    parser.add_argument("--max-replicas", type=int, default=400)
    parser.add_argument("--target", type=float, default=4.0, help="queue delay target (s)")
    parser.add_argument("--scale-up-after", type=float, default=0.0)
    parser.add_argument("--scale-down-after", type=float, default=60.0)
    parser.add_argument("--dispatcher-concurrency", type=int, default=1024)
    parser.add_argument("--bucket", type=float, default=5.0)
    parser.add_argument("--drain-s", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the call signature check")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    parser.add_argument("--series", type=Path, help="write the result (JSON) here")
    parser.add_argument("--png", type=Path, help="draw the curves here")
    parser.add_argument("--plot-with", type=Path, nargs="*", default=[],
                        help="earlier --series files drawn beside this run")  # fmt: skip
    parser.add_argument("--plot-only", action="store_true",
                        help="draw --plot-with into --png without running")  # fmt: skip
    args = parser.parse_args()
    if args.plot_only:
        if args.png is None:
            parser.error("--plot-only needs --png")
        plot(args.plot_with, args.png)
        return
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args))
    print_report(result)
    series = args.series or Path(tempfile.gettempdir()) / f"fleet-{args.nodes}.json"
    series.write_bytes(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY))
    print(f"series: {series}")
    if args.png is not None:
        plot([*args.plot_with, series], args.png)


if __name__ == "__main__":
    main()
