"""Replica placement, pure: `plan_replicas(state, now) -> events` keeps every workspace
within `replicas_min..replicas_max` on live nodes.

Per workspace (largest GPU count first, then by id: first-fit decreasing):
- replicas on a lost (or revoked) node are gone: `DeploymentStopped("node lost")`, and replaced;
- replicas of a deleted workspace: `DeploymentStopped("workspace deleted")`;
- replicas on a draining node do not count; once idle: `DeploymentStopped("node drained")`;
- the count wanted is the workspace's `current_replicas` (its min, or what the autoscaler
  last decided, within min and max: `services.scheduler.autoscale`);
- above it: stop the extras (not ready first, then the least busy); one that runs tasks
  is drained (`DeploymentDraining`: sent no more) and stopped once they have ended;
- below it: `DeploymentRequested` on the node `GpuPool.choose` picks (one per missing
  replica, as long as a node fits; the next pass retries the rest);
- a rollout (replicas of an older revision than the workspace's run): one replica of the
  new revision at a time is started beside them (a surge of one); each that is ready
  lets one old replica drain and stop; old replicas not ready yet are stopped at once.
  When `ROLLOUT_MAX_FAILURES` new replicas have failed, `RolloutFailed`: the workspace
  goes back to its previous revision, whose replicas never stopped serving.
New deployment ids are a digest of (workspace id, node id, the workspace's request
serial): the same state and time always plan the same events, and planning twice before
folding produces duplicates that the fold ignores.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import partial

from events.base import Event
from events.deployment import (
    DeploymentDraining,
    DeploymentFailed,
    DeploymentRequested,
    DeploymentStopped,
)
from events.node import NodeLost
from events.workspace import RolloutFailed
from services.scheduler.autoscale import current_replicas
from services.scheduler.binpack import GpuPool
from services.scheduler.config import SchedulerSettings
from services.scheduler.records import (
    DeploymentPhase,
    DeploymentState,
    NodeStatus,
    WorkspaceSpec,
)
from services.scheduler.state import ClusterState
from services.scheduler.times import epoch_s

NODE_LOST = "node lost"
NODE_DRAINED = "node drained"
SCALE_IN = "scale-in"
WORKSPACE_DELETED = "workspace deleted"
START_DEADLINE = "start deadline passed"
ROLLOUT_MAX_FAILURES = 3
"""New-revision replicas that may fail during a rollout before it is rolled back."""
_GONE = (NodeStatus.LOST, NodeStatus.REVOKED)


def detect_lost_nodes(state: ClusterState, now: datetime, window_s: float) -> list[NodeLost]:
    """A `NodeLost` for every node not yet lost whose last heartbeat is more than
    `window_s` before `now`, by node id."""
    now_s = epoch_s(now)
    lost = []
    for node_id in sorted(state.nodes):
        node = state.nodes[node_id]
        silent = now_s - node.last_heartbeat_s
        if node.status not in _GONE and silent > window_s:
            reason = f"no heartbeat for {silent:.0f}s (limit {window_s:g}s)"
            lost.append(NodeLost(node_id=node_id, reason=reason))
    return lost


def plan_replicas(
    state: ClusterState, now: datetime, settings: SchedulerSettings | None = None
) -> list[Event]:
    """The events that bring every workspace's replicas in line (module docstring):
    `NodeLost` first, then per workspace its stops and requests. Pure: `state` is only
    read; fold the events to apply them."""
    settings = settings or SchedulerSettings()
    lost = detect_lost_nodes(state, now, settings.lost_after_s)
    gone = {event.node_id for event in lost}
    gone.update(n.node_id for n in state.nodes.values() if n.status in _GONE)
    pool = GpuPool.from_state(state, epoch_s(now), settings.heartbeat_window_s, gone)
    events: list[Event] = list(lost)
    overdue = _overdue(state, epoch_s(now), settings.start_deadline_s, gone)
    events.extend(overdue)
    gone_deployments = {e.deployment_id for e in overdue if isinstance(e, DeploymentStopped)}
    for workspace_id in sorted(state.known_workspace_ids(), key=partial(_fit_order, state)):
        events.extend(_reconcile(state, workspace_id, gone, pool, gone_deployments))
    return events


def _overdue(state: ClusterState, now_s: float, deadline_s: float, gone: set[str]) -> list[Event]:
    """`DeploymentFailed` then `DeploymentStopped` (so its node stops running it) for
    every replica not ready `deadline_s` after it was requested, on a node still there."""
    events: list[Event] = []
    for dep in sorted(state.deployments.values(), key=lambda d: d.deployment_id):
        late = now_s - dep.requested_s > deadline_s
        started = dep.phase in (DeploymentPhase.READY, DeploymentPhase.DRAINING)
        if late and not started and dep.node_id not in gone:
            reason = f"{START_DEADLINE}: not ready {deadline_s:g}s after it was requested"
            events.append(DeploymentFailed(
                deployment_id=dep.deployment_id, node_id=dep.node_id,
                workspace_id=dep.workspace_id, reason=reason,
            ))  # fmt: skip
            events.append(_stop(dep, START_DEADLINE))
    return events


def _fit_order(state: ClusterState, workspace_id: str) -> tuple[int, str]:
    spec = state.workspaces.get(workspace_id)
    return (-(spec.gpu_count if spec is not None else 0), workspace_id)


def _reconcile(
    state: ClusterState,
    workspace_id: str,
    gone: set[str],
    pool: GpuPool,
    ended: set[str],
) -> list[Event]:
    deps = [state.deployments[d] for d in state.live_deployment_ids(workspace_id) if d not in ended]
    events: list[Event] = [_stop(d, NODE_LOST) for d in deps if d.node_id in gone]
    deps = [d for d in deps if d.node_id not in gone]
    spec = state.workspaces.get(workspace_id)
    if spec is None:
        # Not registered yet (its topic lags) or deleted: only a deletion stops replicas.
        if state.is_deleted(workspace_id):
            events.extend(_stop(d, WORKSPACE_DELETED) for d in deps)
        return events
    serving = []
    for dep in deps:
        if state.nodes[dep.node_id].status is not NodeStatus.DRAINING:
            serving.append(dep)
        elif dep.in_flight == 0:
            events.append(_stop(dep, NODE_DRAINED))
    draining = [d for d in serving if d.phase is DeploymentPhase.DRAINING]
    events.extend(_stop(d, _replaced(spec)) for d in draining if d.in_flight == 0)
    active = [d for d in serving if d.phase is not DeploymentPhase.DRAINING]
    target = current_replicas(state, spec)
    if any(d.revision != spec.revision for d in active):
        return events + _roll(state, spec, active, target, pool)
    if len(active) > target:
        extras = sorted(active, key=_scale_in_key)[: len(active) - target]
        events.extend(_retire(d, SCALE_IN) for d in extras)
    elif len(active) < target:
        events.extend(_place(state, spec, active, target - len(active), pool))
    return events


def _roll(
    state: ClusterState,
    spec: WorkspaceSpec,
    active: list[DeploymentState],
    target: int,
    pool: GpuPool,
) -> list[Event]:
    """One step of a rollout (module docstring): `active` holds replicas of an older
    revision than `spec`'s."""
    failures = state.rollout_failures(spec.workspace_id)
    if failures >= ROLLOUT_MAX_FAILURES:
        reason = (f"{failures} replicas of revision {spec.revision} failed to start; back "
                  f"on revision {spec.previous.revision if spec.previous else '?'}")  # fmt: skip
        return [RolloutFailed(spec.workspace_id, spec.revision, reason)]
    new = [d for d in active if d.revision == spec.revision]
    old = [d for d in active if d.revision != spec.revision]
    ready = DeploymentPhase.READY
    events: list[Event] = [_stop(d, _replaced(spec)) for d in old if d.phase is not ready]
    old_ready = sorted((d for d in old if d.phase is ready), key=_scale_in_key)
    new_ready = [d for d in new if d.phase is ready]
    excess = len(new_ready) + len(old_ready) - target
    events.extend(_retire(d, _replaced(spec)) for d in old_ready[: max(0, excess)])
    if len(new) == len(new_ready) and len(new) < target:
        events.extend(_place(state, spec, active, 1, pool))
    return events


def _replaced(spec: WorkspaceSpec) -> str:
    return f"replaced by revision {spec.revision}"


def _retire(dep: DeploymentState, reason: str) -> Event:
    """Stop `dep` now if it runs nothing, else drain it (it is stopped once idle)."""
    if dep.in_flight == 0 or dep.phase is not DeploymentPhase.READY:
        return _stop(dep, reason)
    return DeploymentDraining(dep.deployment_id, dep.node_id, dep.workspace_id, reason)


def _scale_in_key(dep: DeploymentState) -> tuple[bool, int, str]:
    # Stop what serves least first: replicas not ready yet, then the idlest.
    return (dep.phase is DeploymentPhase.READY, dep.in_flight, dep.deployment_id)


def _place(
    state: ClusterState,
    spec: WorkspaceSpec,
    serving: list[DeploymentState],
    count: int,
    pool: GpuPool,
) -> list[Event]:
    replicas_on: dict[str, int] = {}
    for dep in serving:
        replicas_on[dep.node_id] = replicas_on.get(dep.node_id, 0) + 1
    failures = partial(state.deployment_failures, spec.workspace_id)
    serial = state.deployment_serial(spec.workspace_id)
    events: list[Event] = []
    for i in range(count):
        node_id = pool.choose(spec.gpu_type, spec.gpu_count, replicas_on, failures)
        if node_id is None:
            break  # no node fits now; the next pass tries again
        pool.take(node_id, spec.gpu_type, spec.gpu_count)
        replicas_on[node_id] = replicas_on.get(node_id, 0) + 1
        dep_id = deployment_id_for(spec.workspace_id, node_id, serial + i)
        events.append(_request(spec, node_id, dep_id))
    return events


def deployment_id_for(workspace_id: str, node_id: str, serial: int) -> str:
    """The deterministic id of the `serial`-th replica request of a workspace on a node."""
    digest = hashlib.blake2b(
        f"{workspace_id}\0{node_id}\0{serial}".encode(), digest_size=10
    ).hexdigest()
    return f"dep-{digest}"


def _request(spec: WorkspaceSpec, node_id: str, deployment_id: str) -> DeploymentRequested:
    return DeploymentRequested(
        deployment_id=deployment_id,
        node_id=node_id,
        workspace_id=spec.workspace_id,
        image=spec.image,
        command=spec.command,
        ports=spec.ports,
        gpu_type=spec.gpu_type,
        gpu_count=spec.gpu_count,
        health_path=spec.health_path,
        env=dict(spec.env),
        revision=spec.revision,
    )


def _stop(dep: DeploymentState, reason: str) -> DeploymentStopped:
    return DeploymentStopped(
        deployment_id=dep.deployment_id,
        node_id=dep.node_id,
        workspace_id=dep.workspace_id,
        reason=reason,
    )
