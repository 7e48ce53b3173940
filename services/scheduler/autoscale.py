"""Load-driven replica counts, decided by the scheduler from what it folds: for each
workspace whose `replicas_max` exceeds its `replicas_min`, how many replicas it should run
(`ReplicasScaled`, which `plan_replicas` then carries out).

The metric is the workspace's choice (`scaling_metric`):
- `queue_delay`: the age of its longest-waiting task. Above `scaling_target` seconds, it
  wants enough replicas to run every task it holds (running and waiting) at once, at
  `concurrency` tasks per replica, and at least one more than it has;
- `in_flight`: its tasks (running and waiting) per replica, `scaling_target` of them
  wanted per replica.
Either way it wants fewer once no task waits and fewer replicas would run what it runs.

A change is made once it has been wanted without a break for `scale_up_after_s` (up) or
`scale_down_after_s` (down), and goes straight to the wanted count. A workspace with no
replica wanted (`replicas_min` 0, idle) gets one at once when a task arrives: that task
waits for it (up to its TTL), it is not refused.

The clocks of those windows are the decider's memory, not folded: a new leader starts
them anew, so a change may come one window late after a takeover, never early."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from events.workspace import ReplicasScaled
from services.scheduler.records import DeploymentPhase, WorkspaceSpec
from services.scheduler.state import ClusterState
from services.scheduler.times import epoch_s


@dataclass(slots=True)
class _Watch:
    wanted_since_s: float
    wanted: int


@dataclass(frozen=True, slots=True)
class Want:
    """How many replicas the load wants, and why, in words an operator reads."""

    replicas: int
    reason: str


def current_replicas(state: ClusterState, spec: WorkspaceSpec) -> int:
    """What the workspace runs by design now: its last `ReplicasScaled` (never scaled:
    the replicas it has, not draining), within min and max."""
    low, high = spec.replicas_min, max(spec.replicas_min, spec.replicas_max)
    desired = state.desired_replicas(spec.workspace_id)
    if desired is None:
        desired = sum(
            1
            for d in state.live_deployment_ids(spec.workspace_id)
            if state.deployments[d].phase is not DeploymentPhase.DRAINING
        )
    return min(max(desired, low), high)


def wanted(state: ClusterState, spec: WorkspaceSpec, current: int, now_s: float) -> Want:
    """The replica count the workspace's load wants at `now_s`, within its min and max."""
    ws = spec.workspace_id
    low, high = spec.replicas_min, max(spec.replicas_min, spec.replicas_max)
    waiting = state.queue.waiting_count(ws)
    running = state.in_flight_by_workspace.get(ws, 0)
    load = waiting + running
    if current == 0 and waiting:
        return Want(max(1, low), f"{waiting} task(s) waiting and no replica")
    if spec.scaling_metric == "in_flight":
        per_replica = max(spec.scaling_target, 1e-9)
        need = min(max(math.ceil(load / per_replica), low), high)
        reason = (f"{load} task(s) running or waiting, target {spec.scaling_target:g} per "
                  f"replica")  # fmt: skip
        return Want(need, reason)
    oldest = state.queue.oldest_submitted_s(ws)
    delay = 0.0 if oldest is None else max(0.0, now_s - oldest)
    every = min(max(math.ceil(load / spec.concurrency), low), high)
    if delay > spec.scaling_target:
        reason = (f"queue delay {delay:.1f}s above target {spec.scaling_target:g}s; {load} "
                  f"task(s) at {spec.concurrency} per replica")  # fmt: skip
        return Want(min(max(current + 1, every), high), reason)
    if not waiting and every < current:
        return Want(every, f"no task waits; {running} running need {every} replica(s)")
    return Want(current, f"queue delay {delay:.1f}s within target {spec.scaling_target:g}s")


class Autoscaler:
    """Turns what the load wants into `ReplicasScaled` decisions, each once its window has
    passed (module docstring)."""

    def __init__(self) -> None:
        self._watching: dict[str, _Watch] = {}

    def decide(self, state: ClusterState, now: datetime) -> list[ReplicasScaled]:
        """The decisions due at `now`, by workspace id; fold them into `state`."""
        now_s = epoch_s(now)
        decisions: list[ReplicasScaled] = []
        for ws in sorted(state.workspaces):
            spec = state.workspaces[ws]
            if spec.replicas_max <= spec.replicas_min:
                self._watching.pop(ws, None)
                continue
            current = current_replicas(state, spec)
            want = wanted(state, spec, current, now_s)
            if want.replicas == current:
                self._watching.pop(ws, None)
                continue
            watch = self._watching.get(ws)
            if watch is None or (watch.wanted > current) != (want.replicas > current):
                watch = self._watching[ws] = _Watch(now_s, want.replicas)
            watch.wanted = want.replicas
            window = spec.scale_up_after_s if want.replicas > current else spec.scale_down_after_s
            if current == 0 or now_s - watch.wanted_since_s >= window:
                decisions.append(ReplicasScaled(ws, want.replicas, want.reason))
                del self._watching[ws]
        for ws in [ws for ws in self._watching if ws not in state.workspaces]:
            del self._watching[ws]
        return decisions
