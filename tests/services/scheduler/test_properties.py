"""Invariants of the scheduler over random clusters, built from real events.

The oracle below states the placement rules from the design directly, over every replica
in the state (not through the ready index or the plugins), so it checks both."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import event as note_event
from hypothesis import given, settings
from hypothesis import strategies as st

from events.base import Event
from events.deployment import (
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    DeploymentStarting,
    DeploymentStopped,
)
from events.node import NodeDrained, NodeHeartbeat, NodeLost
from events.task import TaskDispatched, TaskFailed, TaskRetried
from events.workspace import WorkspaceRegistered
from services.scheduler import (
    ClusterState,
    DeploymentPhase,
    DeploymentState,
    NodeStatus,
    Placement,
    ScheduleRequest,
    SchedulerSettings,
    Unschedulable,
    build_profile,
    dispatch_waiting,
    normalize_gpu_type,
    retry_event,
    schedule,
)
from services.scheduler.plugins import ScheduleContext
from tests.services.scheduler.builders import (
    PORT,
    at,
    completed,
    dispatched,
    failed,
    node_registered,
    submitted,
    workspace_registered,
)

NOW_T = 100.0
WINDOW_S = 30.0
SETTINGS = SchedulerSettings(heartbeat_window_s=WINDOW_S, lost_after_s=90.0, failure_streak=2)
PROFILE = build_profile(SETTINGS)
EXHAUSTIVE = build_profile(
    SchedulerSettings(heartbeat_window_s=WINDOW_S, failure_streak=2, max_feasible=0)
)
# Two GPU types under several raw names; mostly-matching draws so that placements are
# common and every rejection still happens.
GPU_NAMES = ["RTX 4090", "NVIDIA GeForce RTX 4090", "A100", "NVIDIA A100-SXM4-80GB"]
WORKSPACES = ["w0", "w1"]


@dataclass
class World:
    """A random cluster: the events with their times, folded into `state`."""

    log: list[tuple[Event, float]]
    state: ClusterState
    node_ids: list[str]

    def rebuilt(self) -> ClusterState:
        state = ClusterState()
        for event, t in self.log:
            state.apply_event(event, at(t))
        return state


@st.composite
def worlds(draw: st.DrawFn, *, with_load: bool = True) -> World:
    log: list[tuple[Event, float]] = []
    n_nodes = draw(st.integers(1, 6))
    node_ids = [f"n{i}" for i in range(n_nodes)]
    node_gpus: dict[str, str] = {}
    for node_id in node_ids:
        gpus = [draw(st.sampled_from(GPU_NAMES))] * draw(st.sampled_from([0, 1, 2, 2, 4]))
        node_gpus[node_id] = normalize_gpu_type(gpus[0]) if gpus else ""
        log.append((node_registered(node_id, gpus, region=draw(st.sampled_from("ab"))), 0.0))
        heartbeat = draw(st.sampled_from([95.0, 95.0, 95.0, 80.0, 60.0]))  # 60: stale
        log.append((NodeHeartbeat(node_id=node_id), heartbeat))
    for ws in WORKSPACES:
        spec = workspace_registered(
            ws,
            gpu_type=draw(st.sampled_from(GPU_NAMES)),
            gpu_count=draw(st.integers(0, 2)),
            concurrency=draw(st.integers(1, 3)),
        )
        log.append((spec, 0.0))
    specs = {ws: e for e, _ in log if isinstance(e, WorkspaceRegistered) for ws in [e.workspace_id]}
    for i in range(draw(st.integers(2, 12))):
        log.extend((e, 1.0) for e in _replica(draw, f"d{i}", node_gpus, specs))
    for node_id in node_ids:
        fate = draw(st.sampled_from(["ok"] * 6 + ["drained", "lost"]))
        if fate == "drained":
            log.append((NodeDrained(node_id=node_id), 96.0))
        elif fate == "lost":
            log.append((NodeLost(node_id=node_id, reason="test"), 96.0))
    state = ClusterState()
    for event, t in log:
        state.apply_event(event, at(t))
    if with_load:
        log.extend(_load(draw, state))
        state = ClusterState()
        for event, t in log:
            state.apply_event(event, at(t))
    return World(log, state, node_ids)


def _replica(
    draw: st.DrawFn, dep_id: str, node_gpus: dict[str, str], specs: dict[str, WorkspaceRegistered]
) -> list[Event]:
    """Mostly what `plan_replicas` would do (the workspace's GPUs on a node that has that
    type), sometimes anything."""
    workspace_id = draw(st.sampled_from(WORKSPACES))
    spec = specs[workspace_id]
    as_spec = draw(st.integers(0, 5)) > 0
    fitting = [n for n, kind in node_gpus.items() if kind == normalize_gpu_type(spec.gpu_type)]
    nodes = fitting if as_spec and fitting else sorted(node_gpus)
    ids = {
        "deployment_id": dep_id,
        "node_id": draw(st.sampled_from(nodes)),
        "workspace_id": workspace_id,
    }
    events: list[Event] = [
        DeploymentRequested(
            **ids,
            image="img",
            command=("serve",),
            ports=(PORT,),
            gpu_type=spec.gpu_type if as_spec else draw(st.sampled_from(GPU_NAMES)),
            gpu_count=spec.gpu_count if as_spec else draw(st.integers(0, 2)),
        )
    ]
    phase = draw(st.sampled_from(["requested", "starting", "failed"] + ["ready"] * 7))
    if phase != "requested":
        events.append(DeploymentStarting(**ids))
    if phase == "ready":
        port = draw(st.sampled_from([PORT] * 5 + [9999]))
        events.append(DeploymentReady(**ids, host_ports={str(port): 30000}))
    elif phase == "failed":
        events.append(DeploymentFailed(**ids, reason="x"))
    if draw(st.integers(0, 5)) == 0:
        events.append(DeploymentStopped(**ids, reason="x"))
    return events


def _load(draw: st.DrawFn, state: ClusterState) -> list[tuple[Event, float]]:
    """Tasks in flight on ready replicas (possibly past concurrency, as after a change of
    settings) and failures that build failure streaks."""
    events: list[tuple[Event, float]] = []
    ready = sorted(d for ws in WORKSPACES for d in state.ready_deployment_ids(ws))
    for i in range(draw(st.integers(0, 4)) if ready else 0):
        dep = state.deployments[draw(st.sampled_from(ready))]
        d = dispatched(f"load{i}", dep.workspace_id, dep.node_id, dep.deployment_id)
        events.append((d, 97.0))
        if draw(st.integers(0, 2)) == 0:
            # At 98 the failure is recent (streaks pause the node), at 30 it has cooled down.
            events.append((failed(d), draw(st.sampled_from([30.0, 98.0]))))
    return events


@st.composite
def requests(draw: st.DrawFn, world: World) -> ScheduleRequest:
    ws = draw(st.sampled_from([*WORKSPACES * 3, "unknown"]))
    spec = world.state.workspaces.get(ws)
    same = spec is not None and draw(st.integers(0, 5)) > 0
    return ScheduleRequest(
        task_id=draw(st.text("abcxyz0123", min_size=1, max_size=6)),
        workspace_id=ws,
        gpu_type=spec.gpu_type if same and spec else draw(st.sampled_from(GPU_NAMES)),
        gpu_count=spec.gpu_count if same and spec else draw(st.integers(0, 3)),
        port=draw(st.sampled_from([PORT] * 6 + [0, 9999])),
        now=at(NOW_T),
        excluded_node_ids=frozenset(
            draw(st.lists(st.sampled_from(world.node_ids), max_size=2))
            if draw(st.integers(0, 3)) == 0
            else []
        ),
        preferred_region=draw(st.sampled_from([None, "a", "b"])),
    )


def oracle(state: ClusterState, request: ScheduleRequest) -> list[DeploymentState]:
    """Every replica that may take `request`, by the rules of the design."""
    spec = state.workspaces.get(request.workspace_id)
    if state.is_deleted(request.workspace_id):
        return []
    concurrency = spec.concurrency if spec else 1
    port = request.port or (spec.ports[0] if spec else 0)
    gpu_type, gpu_count = normalize_gpu_type(request.gpu_type), request.gpu_count
    now_s = at(NOW_T).timestamp()
    fits = []
    for dep in state.deployments.values():
        node = state.nodes[dep.node_id]
        gpu_ok = gpu_count <= 0 or (
            node.gpus.get(gpu_type, 0) >= gpu_count
            and dep.gpu_type == gpu_type
            and dep.gpu_count >= gpu_count
        )
        paused = (
            node.consecutive_failures >= SETTINGS.failure_streak
            and node.last_failure_s is not None
            and now_s - node.last_failure_s < SETTINGS.failure_cooldown_s
        )
        if (
            dep.workspace_id == request.workspace_id
            and dep.phase is DeploymentPhase.READY
            and (port in dep.host_ports if port else bool(dep.host_ports))
            and gpu_ok
            and node.status is NodeStatus.ACTIVE
            and now_s - node.last_heartbeat_s <= WINDOW_S
            and dep.in_flight < concurrency
            and node.node_id not in request.excluded_node_ids
            and not paused
        ):
            fits.append(dep)
    return fits


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_placement_obeys_every_rule_and_exists_iff_a_replica_fits(data: st.DataObject) -> None:
    world = data.draw(worlds())
    request = data.draw(requests(world))
    decision = schedule(world.state, request, PROFILE)
    fits = {d.deployment_id for d in oracle(world.state, request)}
    note_event(f"placed={isinstance(decision, Placement)}")
    if isinstance(decision, Placement):
        assert decision.deployment_id in fits
        dep = world.state.deployments[decision.deployment_id]
        node = world.state.nodes[decision.node_id]
        assert dep.node_id == node.node_id
        assert (decision.host, decision.address) == (node.host, node.address)
        assert dep.host_ports[decision.container_port] == decision.host_port
    else:
        assert fits == set(), decision.reasons
        assert decision.reasons


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_unschedulable_reasons_account_for_every_ready_replica(data: st.DataObject) -> None:
    world = data.draw(worlds())
    request = data.draw(requests(world))
    decision = schedule(world.state, request, PROFILE)
    ready = world.state.ready_deployment_ids(request.workspace_id)
    if (
        isinstance(decision, Unschedulable)
        and ready
        and not world.state.is_deleted(request.workspace_id)
    ):
        counted = sum(int(line.split()[0]) for lines in decision.reasons.values() for line in lines)
        assert counted == len(ready) == decision.evaluated


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_placement_is_deterministic(data: st.DataObject) -> None:
    world = data.draw(worlds())
    request = data.draw(requests(world))
    first = schedule(world.state, request, PROFILE)
    assert schedule(world.state, request, PROFILE) == first
    assert schedule(world.rebuilt(), request, PROFILE) == first
    assert schedule(world.state.copy(), request, PROFILE) == first


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_the_winner_has_the_best_total_score(data: st.DataObject) -> None:
    world = data.draw(worlds())
    request = data.draw(requests(world))
    decision = schedule(world.state, request, EXHAUSTIVE)
    if not isinstance(decision, Placement):
        return
    totals = [_total(world.state, request, dep) for dep in oracle(world.state, request)]
    assert decision.feasible == len(totals)
    assert decision.score == max(totals)


def _total(state: ClusterState, request: ScheduleRequest, dep: DeploymentState) -> float:
    """The weighted score of `dep`, computed from the plugins and weights directly."""
    spec = state.workspaces.get(request.workspace_id)
    ctx = ScheduleContext(
        task_id=request.task_id,
        workspace_id=request.workspace_id,
        gpu_type=normalize_gpu_type(request.gpu_type),
        gpu_count=request.gpu_count,
        port=request.port or (spec.ports[0] if spec else 0),
        concurrency=spec.concurrency if spec else 1,
        excluded_node_ids=request.excluded_node_ids,
        now_s=request.now.timestamp(),
        preferred_region=request.preferred_region,
        workspace_latency_s=state.workspace_latency_s(request.workspace_id),
    )
    node = state.nodes[dep.node_id]
    total = 0.0
    for plugin, weight in EXHAUSTIVE.scores:
        total += weight * plugin.score(ctx, dep, node)
    return total


# -- no double-booking over random histories -------------------------------------------

# Each step is followed by a scheduling round, as the runner does after every change;
# "round" adds a round that may dispatch more.
_SUBMIT = st.tuples(st.just("submit"), st.sampled_from(WORKSPACES), st.integers(-1, 2))
_STEPS = st.lists(
    st.one_of(
        _SUBMIT,
        _SUBMIT,
        st.tuples(st.just("round"), st.integers(1, 4), st.just(0)),
        st.tuples(st.just("complete"), st.integers(0, 50), st.just(0)),
        st.tuples(st.just("fail"), st.integers(0, 50), st.integers(0, 1)),
        st.tuples(st.just("redeliver"), st.integers(0, 50), st.just(0)),
    ),
    min_size=6,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(worlds(with_load=False), _STEPS)
def test_no_slot_is_ever_double_booked(
    world: World, steps: list[tuple[str, str | int, int]]
) -> None:
    state = world.state
    decided: list[Event] = []
    t = NOW_T
    for n, (kind, arg, extra) in enumerate(steps):
        t += 1.0
        for event in _step(state, kind, arg, extra, n, decided, t):
            state.apply_event(event, at(t))
            decided.append(event)
        _check_slots(state)
        decided.extend(dispatch_waiting(state, at(t), PROFILE, limit=1 + n % 2))
        _check_slots(state)
    dispatches = sum(isinstance(e, TaskDispatched) for e in decided)
    note_event(f"dispatches={'0' if not dispatches else '1-3' if dispatches < 4 else '4+'}")


def _step(
    state: ClusterState,
    kind: str,
    arg: str | int,
    extra: int,
    n: int,
    decided: list[Event],
    t: float,
) -> list[Event]:
    # Keep the nodes alive: the history is about tasks, not heartbeats.
    for node_id in state.nodes:
        state.apply_event(NodeHeartbeat(node_id=node_id), at(t))
    if kind == "submit":
        assert isinstance(arg, str)
        spec = state.workspaces[arg]
        return [
            submitted(
                f"t{n}", arg, gpu_type=spec.gpu_type, gpu_count=spec.gpu_count, priority=extra
            )
        ]
    if kind == "round":
        assert isinstance(arg, int)
        events = dispatch_waiting(state, at(t), PROFILE, limit=arg)  # folds its own events
        decided.extend(events)
        return []
    running = sorted(state.assignments)
    if kind == "redeliver" and decided:
        assert isinstance(arg, int)
        return [decided[arg % len(decided)]]
    if not running:
        return []
    assert isinstance(arg, int)
    current = state.assignments[running[arg % len(running)]]
    sent = next(
        e
        for e in reversed(decided)
        if isinstance(e, TaskDispatched)
        and e.task_id == current.task_id
        and e.attempt == current.attempt
    )
    if kind == "complete":
        return [completed(sent)]
    failure = failed(sent, retryable=bool(extra))
    state.apply_event(failure, at(t))
    decided.append(failure)
    return [retry_event(state, failure)] if failure.retryable else []


def _check_slots(state: ClusterState) -> None:
    per_dep: dict[str, int] = {}
    per_node: dict[str, int] = {}
    for a in state.assignments.values():
        per_dep[a.deployment_id] = per_dep.get(a.deployment_id, 0) + 1
        per_node[a.node_id] = per_node.get(a.node_id, 0) + 1
        assert a.task_id not in state.queue
    for dep in state.deployments.values():
        spec = state.workspaces.get(dep.workspace_id)
        assert dep.in_flight == per_dep.get(dep.deployment_id, 0)
        assert dep.in_flight <= (spec.concurrency if spec else 1)
    for node in state.nodes.values():
        assert node.in_flight == per_node.get(node.node_id, 0)
    assert sum(state.in_flight_by_workspace.values()) == len(state.assignments)
    for task in state.queue:
        assert task.task_id in state.tasks


@settings(max_examples=100, deadline=None)
@given(worlds(with_load=False), st.integers(1, 5))
def test_a_retry_never_returns_to_a_failed_node(world: World, rounds: int) -> None:
    state = world.state
    failed_on: set[str] = set()
    state.apply_event(
        submitted(
            "t",
            "w0",
            gpu_type=state.workspaces["w0"].gpu_type,
            gpu_count=state.workspaces["w0"].gpu_count,
        ),
        at(NOW_T),
    )
    for _ in range(rounds):
        sent = [e for e in dispatch_waiting(state, at(NOW_T)) if isinstance(e, TaskDispatched)]
        if not sent:
            return
        assert sent[0].node_id not in failed_on
        failed_on.add(sent[0].node_id)
        failure = failed(sent[0])
        state.apply_event(failure, at(NOW_T))
        retry = retry_event(state, failure)
        replica_nodes = {state.deployments[d].node_id for d in state.live_deployment_ids("w0")}
        if replica_nodes <= failed_on:
            # No node left to try: the task ends with this failure instead of waiting.
            assert isinstance(retry, TaskFailed) and not retry.retryable
            return
        assert isinstance(retry, TaskRetried)
        assert set(retry.excluded_node_ids) == failed_on
        state.apply_event(retry, at(NOW_T))
