"""The distributed scheduler with two workers (child processes running `faust_child.py`)
against the real Kafka broker: one leads at a time, every task is dispatched once, no
node gets more tasks than its slots, and a standby takes over from a leader that is
killed or stopped.

The test process plays the other roles: it registers a workspace with a ready replica on
each of two nodes (two slots per node) and a probe workspace on a third node, heartbeats
for the nodes, submits tasks, and acts as the dispatcher: it completes every dispatch
after a short while, or holds them all while leadership moves, so the new leader starts
with every slot taken and tasks waiting. A probe task dispatched by the new leader shows
that it has decided with that state in hand; only then are the held tasks completed.

Below those, the pieces in one process: the catch-up replay on Kafka, the leader gate and
a leadership term on the embedded bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest

from events import TaskDispatched, topics
from events.base import Event
from events.deployment import DeploymentReady, DeploymentRequested, DeploymentStarting
from events.node import NodeHeartbeat
from services.bus import Bus, EmbeddedBus, bus_from_settings, decode_record, publish_events
from services.bus.kafka import KafkaBus
from services.scheduler import ClusterState
from services.scheduler.distributed import (
    CatchUpConsumer,
    LeaderGate,
    Leadership,
    NotLeaderError,
    TermBus,
)
from services.settings import load_settings
from tests.conftest import REPO
from tests.services.scheduler.builders import (
    PORT,
    completed,
    dispatched,
    node_registered,
    submitted,
    workspace_registered,
)
from tests.support.kafka import KafkaBroker

CHILD = Path(__file__).with_name("faust_child.py")
WORKSPACE = "ws-faust"
NODES = ("node-a", "node-b")
CONCURRENCY = 2  # one replica per node: two slots per node
SLOTS = CONCURRENCY * len(NODES)
PROBE_WORKSPACE, PROBE_NODE = "ws-probe", "node-probe"
HANG_S = 180.0  # only a guard against hangs: rebalances take seconds

pytestmark = pytest.mark.timeout(600)


@dataclass
class Worker:
    """One scheduler child process; its log is `log_path`."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    killed_at: float | None = None

    def lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def leadership(self) -> list[tuple[float, str]]:
        """(unix time, "leading" | "standing by") for each leadership line, in order."""
        marks = []
        for line in self.lines():
            stamp, _, rest = line.partition(" ")
            for state in ("leading", "standing by"):
                if f"scheduler: {state}" in rest:
                    marks.append((float(stamp), state))
        return marks

    def state(self) -> str | None:
        marks = self.leadership()
        return marks[-1][1] if marks else None

    def terms(self) -> list[tuple[float, float]]:
        """The (start, end) of each term; a term still open ends now (or at the kill)."""
        spans: list[tuple[float, float]] = []
        start: float | None = None
        for stamp, state in self.leadership():
            if state == "leading":
                start = stamp
            elif start is not None:
                spans.append((start, stamp))
                start = None
        if start is not None:
            spans.append((start, self.killed_at or time.time()))
        return spans


@dataclass
class FakeDispatcher:
    """Completes every `TaskDispatched` after a short random delay (once `released` is
    set), counting the tasks in flight per node as it goes: a slot is given back just
    before its completion is published, so the count never exceeds what a correct
    scheduler allows."""

    bus: Bus
    dispatches: Counter[tuple[str, int]] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    dispatched: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    _calls: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.released.set()

    async def run(self) -> None:
        async with self.bus.consumer([topics.TASKS], start="earliest") as consumer:
            while True:
                for record in await consumer.fetch(500, timeout_s=0.5):
                    event = decode_record(record).event
                    if isinstance(event, TaskDispatched):
                        self._take(event)

    def _take(self, event: TaskDispatched) -> None:
        self.dispatches[(event.task_id, event.attempt)] += 1
        self.dispatched.add(event.task_id)
        self.in_flight[event.node_id] += 1
        self.peak[event.node_id] = max(self.peak[event.node_id], self.in_flight[event.node_id])
        call = asyncio.create_task(self._complete(event))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)

    def cancel(self) -> None:
        for call in self._calls:
            call.cancel()

    async def _complete(self, event: TaskDispatched) -> None:
        await self.released.wait()
        await asyncio.sleep(random.uniform(0.05, 0.4))
        self.in_flight[event.node_id] -= 1
        await publish_events(self.bus, [completed(event)])
        self.done.add(event.task_id)


class SchedulerCluster:
    """The bus, the worker processes and the roles the test plays around them."""

    def __init__(self, bus: Bus, env: dict[str, str], directory: Path) -> None:
        self.bus = bus
        self.env = env
        self.directory = directory
        self.workers: list[Worker] = []
        self.dispatcher = FakeDispatcher(bus)
        self.submitted: list[str] = []

    async def setup_nodes(self) -> None:
        """The workspace with one ready replica on each of `NODES`, the probe workspace
        with one on `PROBE_NODE` (published before any worker runs: nothing to plan)."""
        events: list[Event] = [
            workspace_registered(
                WORKSPACE, replicas_min=len(NODES), replicas_max=len(NODES),
                concurrency=CONCURRENCY,
            ),
            workspace_registered(PROBE_WORKSPACE),
        ]  # fmt: skip
        for node_id in NODES:
            events += ready_replica(node_id, WORKSPACE)
        events += ready_replica(PROBE_NODE, PROBE_WORKSPACE)
        await publish_events(self.bus, events)

    async def heartbeat(self) -> None:
        while True:
            nodes = (*NODES, PROBE_NODE)
            await publish_events(self.bus, [NodeHeartbeat(node_id=n) for n in nodes])
            await asyncio.sleep(0.5)

    def start_worker(self, name: str) -> Worker:
        log_path = self.directory / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, str(CHILD)], cwd=REPO, env=self.env, stdout=log, stderr=log
            )
        worker = Worker(name, process, log_path)
        self.workers.append(worker)
        return worker

    def kill(self, worker: Worker) -> None:
        worker.killed_at = time.time()
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=30)

    async def stop(self, worker: Worker) -> int:
        worker.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(worker.process.wait, HANG_S)

    async def submit(self, prefix: str, count: int, workspace: str = WORKSPACE) -> list[str]:
        ids = [f"{prefix}-{i}-{uuid.uuid4().hex[:6]}" for i in range(count)]
        await publish_events(self.bus, [submitted(task_id, workspace) for task_id in ids])
        self.submitted += ids
        return ids

    async def fill_slots(self, prefix: str) -> list[str]:
        """Hold completions, submit twice as many tasks as there are slots, and return
        once every slot is taken (the other half waits)."""
        self.dispatcher.released.clear()
        ids = await self.submit(prefix, 2 * SLOTS)
        await wait_for(lambda: self.dispatched_of(ids) >= SLOTS, "every slot taken")
        return ids

    async def probe_then_release(self, held: list[str]) -> None:
        """Wait until a probe task is dispatched (a leader decided with `held` in its
        state), check that none of `held` moved meanwhile, then complete them all."""
        (probe,) = await self.submit("probe", 1, PROBE_WORKSPACE)
        await wait_for(lambda: probe in self.dispatcher.dispatched, "the probe dispatched")
        assert self.dispatched_of(held) == SLOTS, "a held slot was given to a waiting task"
        self.dispatcher.released.set()
        await self.all_done([*held, probe])

    def dispatched_of(self, ids: list[str]) -> int:
        return len(self.dispatcher.dispatched.intersection(ids))

    def leader(self) -> Worker | None:
        """The one live worker leading while every other live one stands by, else None."""
        live = [w for w in self.workers if w.process.poll() is None]
        leading = [w for w in live if w.state() == "leading"]
        settled = all(w.state() is not None for w in live)
        return leading[0] if len(leading) == 1 and settled else None

    async def settled_leader(self) -> Worker:
        await wait_for(lambda: self.leader() is not None, "one leader, the others standing by")
        leader = self.leader()
        assert leader is not None
        return leader

    async def all_done(self, ids: list[str]) -> None:
        await wait_for(lambda: set(ids) <= self.dispatcher.done, f"{len(ids)} tasks completed")

    def check_invariants(self) -> None:
        twice = {key: n for key, n in self.dispatcher.dispatches.items() if n > 1}
        assert not twice, f"dispatched more than once: {twice}"
        over = {node: n for node, n in self.dispatcher.peak.items() if n > CONCURRENCY}
        assert not over, f"more tasks in flight than slots: {over}"
        terms = sorted((span, w.name) for w in self.workers for span in w.terms())
        for ((_, end), first), ((start, _), second) in pairwise(terms):
            assert end <= start, f"{first} and {second} led at the same time: {terms}"

    async def dispatches_in_log(self) -> Counter[str]:
        """`TaskDispatched` per task, read back from the whole tasks topic."""
        counts: Counter[str] = Counter()
        async for record in self.bus.replay([topics.TASKS]):
            event = decode_record(record).event
            if isinstance(event, TaskDispatched):
                counts[event.task_id] += 1
        return counts


def ready_replica(node_id: str, workspace_id: str) -> list[Event]:
    """A node and a replica of the workspace on it, ready on `PORT`."""
    ids = {"deployment_id": f"dep-{node_id}", "node_id": node_id, "workspace_id": workspace_id}
    return [
        node_registered(node_id),
        DeploymentRequested(
            **ids, image="img:1", command=("serve",), ports=(PORT,), gpu_type="RTX4090",
            gpu_count=1,
        ),
        DeploymentStarting(**ids),
        DeploymentReady(**ids, host_ports={str(PORT): 30000}),
    ]  # fmt: skip


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for: {what}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def cluster(kafka_broker: KafkaBroker, tmp_path: Path) -> AsyncIterator[SchedulerCluster]:
    env_settings = {
        "NGPU_BUS": "kafka",
        "NGPU_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "NGPU_KAFKA_NAMESPACE": f"t{uuid.uuid4().hex[:10]}.",
        "NGPU_BUS_PARTITIONS": "4",
        "NGPU_HEARTBEAT_INTERVAL_S": "1",
        "NGPU_NODE_LOST_AFTER_S": "60",
        "NGPU_SCHEDULER_TICK_S": "0.2",
        "NGPU_DATA_DIR": str(tmp_path / "data"),  # each worker keeps its own faust dir there
    }
    fields = {name.removeprefix("NGPU_").lower(): value for name, value in env_settings.items()}
    settings = load_settings(**fields)
    bus = bus_from_settings(settings)
    await bus.start()
    instance = SchedulerCluster(bus, {**os.environ, **env_settings}, tmp_path)
    await instance.setup_nodes()
    helpers = [
        asyncio.create_task(instance.heartbeat()),
        asyncio.create_task(instance.dispatcher.run()),
    ]
    try:
        yield instance
    finally:
        for worker in instance.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(timeout=30)
        instance.dispatcher.cancel()
        for helper in helpers:
            helper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*helpers)
        await bus.close()


async def test_two_workers_one_leader_each_task_dispatched_once(
    cluster: SchedulerCluster,
) -> None:
    first = cluster.start_worker("a")
    await wait_for(lambda: first.state() == "leading", "the first worker to lead")
    held = await cluster.fill_slots("held")
    # The second worker's arrival moves leadership through a rebalance, tasks in flight.
    cluster.start_worker("b")
    await cluster.settled_leader()
    await cluster.probe_then_release(held)

    ids = await cluster.submit("both", 12)
    await cluster.all_done(ids)

    cluster.check_invariants()
    assert set((await cluster.dispatches_in_log()).values()) == {1}


@pytest.mark.parametrize("how", ["kill", "stop"])
async def test_standby_takes_over(cluster: SchedulerCluster, how: str) -> None:
    cluster.start_worker("a")
    cluster.start_worker("b")
    leader = await cluster.settled_leader()
    standby = next(w for w in cluster.workers if w is not leader)
    before = await cluster.submit("before", 8)
    await cluster.all_done(before)
    held = await cluster.fill_slots("held")

    if how == "kill":
        cluster.kill(leader)
    else:
        assert await cluster.stop(leader) == 0
        assert any("exited cleanly" in line for line in leader.lines())
    await cluster.probe_then_release(held)
    after = await cluster.submit("after", 8)
    await cluster.all_done(after)

    assert cluster.leader() is standby
    cluster.check_invariants()
    counts = await cluster.dispatches_in_log()
    assert {task_id: counts[task_id] for task_id in cluster.submitted} == dict.fromkeys(
        cluster.submitted, 1
    )


# -- the pieces, in one process --------------------------------------------------------


@pytest.fixture
async def kafka_bus(kafka_broker: KafkaBroker) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(kafka_broker.bootstrap, partitions=4, namespace=f"t{uuid.uuid4().hex[:10]}.")
    await bus.start()
    yield bus
    await bus.close()


async def test_catch_up_replays_nodes_first_in_full_batches(kafka_bus: KafkaBus) -> None:
    await publish_events(kafka_bus, [workspace_registered(WORKSPACE, concurrency=2)])
    await publish_events(kafka_bus, ready_replica("node-a", WORKSPACE))
    await publish_events(kafka_bus, [submitted(t, WORKSPACE) for t in ("t1", "t2")])
    await publish_events(
        kafka_bus, [dispatched(t, WORKSPACE, "node-a", "dep-node-a") for t in ("t1", "t2")]
    )

    batches = []
    async with CatchUpConsumer(kafka_bus, topics.ALL_TOPICS) as consumer:
        while not consumer.caught_up:
            batches.append(await consumer.fetch(2, timeout_s=1.0))
    records = [record for batch in batches for record in batch]

    assert [len(batch) for batch in batches] == [2, 2, 2, 2, 1]
    kinds = [record.topic for record in records]
    assert kinds.index(topics.TASKS) == 5  # the workspace and the node's four records first
    state = ClusterState.from_envelopes(decode_record(r) for r in records)
    assert state.deployments["dep-node-a"].in_flight == 2
    assert state.nodes["node-a"].in_flight == 2


async def test_gate_refuses_when_closed_and_lets_a_started_publish_finish(
    bus: EmbeddedBus,
) -> None:
    gate = LeaderGate()
    term_bus = TermBus(bus, gate)
    with pytest.raises(NotLeaderError):
        await term_bus.publish("t", "k", b"refused")
    gate.open()
    publishing = asyncio.create_task(term_bus.publish("t", "k", b"started"))
    await asyncio.sleep(0)  # the publish has begun
    publishing.cancel()  # the caller goes away: the publish itself carries on
    gate.close()
    assert await gate.drain(timeout_s=10.0)
    with pytest.raises(NotLeaderError):
        await term_bus.publish("t", "k", b"after")
    assert [record.value async for record in bus.replay(["t"])] == [b"started"]


async def test_leadership_term_dispatches_then_steps_down(bus: EmbeddedBus, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, scheduler_tick_s=0.1)
    setup = [workspace_registered(WORKSPACE), *ready_replica("node-a", WORKSPACE)]
    await publish_events(bus, [*setup, submitted("t1", WORKSPACE)])
    leadership = Leadership(bus, settings, drain_timeout_s=10.0)

    leadership.lead()
    leadership.lead()  # already leading: nothing new
    async with bus.consumer([topics.TASKS], start="earliest") as consumer:
        seen: list[Event] = []
        while not any(isinstance(event, TaskDispatched) for event in seen):
            seen += [decode_record(r).event for r in await consumer.fetch(100, timeout_s=1.0)]
    await leadership.step_down()

    assert (leadership.leading, leadership.terms) == (False, 1)
    assert leadership.decisions >= 1
    await leadership.close()
    leadership.lead()  # closed: stays down
    assert not leadership.leading
