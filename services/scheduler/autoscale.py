"""Load-driven replica counts, decided by the scheduler from what it folds: for each
workspace whose `replicas_max` exceeds its `replicas_min`, how many replicas it should run
(`ReplicasScaled`, which `plan_replicas` then carries out).

The metric is the workspace's choice (`scaling_metric`):
- `queue_delay`: the age of its longest-waiting task against `scaling_target` seconds.
  What it needs is the work arriving plus the backlog, at `concurrency` tasks per replica:
  its arrival rate (measured between decisions) times the time its tasks hold a slot
  (from dispatch to completion as the scheduler folds them: the container's time and the
  trip through the log), plus what waits, drained within `DRAIN_S`; before any task has
  completed (no processing time known) it needs a slot for every task it holds. Above
  the target it scales up to what it needs, and by at least one replica when none is
  starting (a replica that is starting counts as coming capacity: no new one per tick
  while it starts). Within the target it scales down to what it needs;
- `in_flight`: its tasks (running and waiting) per replica, `scaling_target` of them
  wanted per replica.

A change is made once it has been wanted without a break for `scale_up_after_s` (up) or
`scale_down_after_s` (down), and goes straight to the count wanted. A workspace with no
replica wanted (`replicas_min` 0, idle) gets one at once when a task arrives: that task
waits for it (up to its TTL), it is not refused.

The clocks of those windows, and the arrival rates, are the decider's memory, not
folded: a new leader starts them anew, so a change may come one window late after a
takeover, never early."""

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


DRAIN_S = 15.0
"""How soon the replicas asked for should drain what waits, besides what arrives."""
_RATE_SAMPLE_S = 1.0
_RATE_WEIGHT = 0.5


def wanted(
    state: ClusterState, spec: WorkspaceSpec, current: int, now_s: float, rate: float = 0.0
) -> Want:
    """The replica count the workspace's load wants at `now_s`, within its min and max;
    `rate` is its arrival rate (tasks/s) as last measured."""
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
    latency = state.slot_time_s(ws)
    if latency is None:
        slots, how = float(load), f"{load} task(s) held"
    else:
        slots = max(rate * latency + waiting * latency / DRAIN_S, float(running))
        how = f"{rate:.1f} task(s)/s x {latency:.2f}s, {waiting} waiting"
    need = min(max(math.ceil(slots / spec.concurrency - 1e-9), low), high)
    if delay > spec.scaling_target:
        starting = _starting(state, ws)
        floor = current if starting else current + 1
        reason = (f"queue delay {delay:.1f}s above target {spec.scaling_target:g}s; {how} "
                  f"at {spec.concurrency} per replica")  # fmt: skip
        return Want(min(max(floor, need), high), reason)
    if need < current:
        reason = (f"queue delay {delay:.1f}s within target {spec.scaling_target:g}s; {how}: "
                  f"{need} replica(s) needed")  # fmt: skip
        return Want(need, reason)
    return Want(current, f"queue delay {delay:.1f}s within target {spec.scaling_target:g}s")


def _starting(state: ClusterState, workspace_id: str) -> int:
    phases = (DeploymentPhase.REQUESTED, DeploymentPhase.STARTING)
    return sum(
        1 for d in state.live_deployment_ids(workspace_id) if state.deployments[d].phase in phases
    )


@dataclass(slots=True)
class _Rate:
    at_s: float
    arrivals: int
    per_s: float | None = None

    def update(self, now_s: float, arrivals: int) -> float:
        """The arrival rate, re-measured once a sample's time has passed (an average
        weighing the newest sample by `_RATE_WEIGHT`)."""
        elapsed = now_s - self.at_s
        if elapsed >= _RATE_SAMPLE_S:
            sample = max(0, arrivals - self.arrivals) / elapsed
            previous = sample if self.per_s is None else self.per_s
            self.per_s = _RATE_WEIGHT * sample + (1 - _RATE_WEIGHT) * previous
            self.at_s, self.arrivals = now_s, arrivals
        return self.per_s or 0.0


class Autoscaler:
    """Turns what the load wants into `ReplicasScaled` decisions, each once its window has
    passed (module docstring)."""

    def __init__(self) -> None:
        self._watching: dict[str, _Watch] = {}
        self._rates: dict[str, _Rate] = {}

    def decide(self, state: ClusterState, now: datetime) -> list[ReplicasScaled]:
        """The decisions due at `now`, by workspace id; fold them into `state`."""
        now_s = epoch_s(now)
        decisions: list[ReplicasScaled] = []
        for ws in sorted(state.workspaces):
            spec = state.workspaces[ws]
            if spec.replicas_max <= spec.replicas_min:
                self._watching.pop(ws, None)
                continue
            arrivals = state.arrivals(ws)
            rate = self._rates.setdefault(ws, _Rate(now_s, arrivals)).update(now_s, arrivals)
            current = current_replicas(state, spec)
            want = wanted(state, spec, current, now_s, rate)
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
        for ws in [ws for ws in self._rates if ws not in state.workspaces]:
            del self._rates[ws]
        return decisions
