"""`ClusterState`: what the scheduler knows, folded from node, deployment, workspace and
task events.

The fold is deterministic: the same events with the same times give the same state. It
expects per-key order (what the bus guarantees) and tolerates at-least-once delivery: a
duplicate changes nothing (a dispatch of an attempt already in flight or superseded, a
completion of an attempt no longer in flight, any event of a recently finished task, an
event of a replica already gone, ...).

Slots: `TaskDispatched` takes one slot of its replica (and counts on its node and
workspace); the attempt's `TaskCompleted`/`TaskFailed`, or the task's `TaskCancelled`/
`TaskExpired`, gives it back. A replica has the workspace's `concurrency` slots.

Cancels: a `TaskCancelRequested` marks a live task `cancelling` and takes it out of the
queue (it is never dispatched again). While an attempt of it is in flight the dispatcher
ends it (it aborts the call); once none is (at once for a queued task, or when the
attempt fails and would be retried) it is due for the scheduler's own `TaskCancelled`
(`cancels_due`). So a task's end has one emitter per phase.

Idempotency: a `TaskSubmitted` with an `idempotency_key` is held out of the queue until
the scheduler's `IdempotencyChecked` for it is folded (`keys_due` lists those awaiting
one). The verdict, not the order submissions happen to be folded in, decides which task
holds a key: the first verdict for a key within `IDEMPOTENCY_WINDOW_S` claims it, later
ones name it as their original. Claims older than the window are forgotten as the fold's
time passes them, so what the state holds is bounded by the window's keyed submissions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from events.base import Event
from events.deployment import (
    DeploymentDraining,
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    DeploymentStarting,
    DeploymentStopped,
)
from events.envelope import Envelope
from events.node import (
    GpuInfo,
    NodeDrained,
    NodeHeartbeat,
    NodeLost,
    NodeRegistered,
    NodeRevoked,
)
from events.task import (
    IdempotencyChecked,
    TaskCancelled,
    TaskCancelRequested,
    TaskCompleted,
    TaskDispatched,
    TaskExpired,
    TaskFailed,
    TaskRetried,
    TaskSubmitted,
)
from events.workspace import (
    ReplicasScaled,
    RolloutFailed,
    WorkspaceDeleted,
    WorkspaceRegistered,
    WorkspaceUpdated,
)
from services.scheduler.errors import InvalidSchedulerSettings
from services.scheduler.gpu import normalize_gpu_type
from services.scheduler.queue import WaitQueue
from services.scheduler.records import (
    Assignment,
    DeploymentPhase,
    DeploymentState,
    NodeState,
    NodeStatus,
    QueuedTask,
    TaskPayload,
    WorkspaceSpec,
)
from services.scheduler.times import epoch_s

_Handler = Callable[["ClusterState", Any, float], None]

FINISHED_MEMORY = 100_000
"""How many finished task ids the fold remembers, so that a late duplicate of one of
their events cannot take a slot again (the oldest are forgotten first)."""

IDEMPOTENCY_WINDOW_S = 86_400.0
"""How long an `Idempotency-Key` stays claimed by its first task."""


class ClusterState:
    """The scheduler's view of the cluster, updated in place by `apply`.

    Readers (`schedule`, `plan_replicas`, plugins) only read it. Deployments are indexed
    by workspace (live and ready) and by node, so a decision looks only at the replicas of
    the task's workspace. Failed and stopped replicas, and those on a lost node, leave the
    state; their ids are remembered so a late duplicate cannot bring them back.

    `queue` holds the waiting tasks: submitted or retried, not yet dispatched or finished.
    """

    __slots__ = (
        "_alpha",
        "_arrivals",
        "_assignments",
        "_by_node",
        "_by_workspace",
        "_cancelling",
        "_deleted",
        "_deployments",
        "_desired",
        "_ended",
        "_failed_on",
        "_finished",
        "_keys",
        "_nodes",
        "_ready",
        "_ready_ids",
        "_rollout_failures",
        "_serials",
        "_tasks",
        "_unchecked",
        "_workspaces",
        "_ws_arrivals",
        "_ws_in_flight",
        "_ws_latency",
        "_ws_occupancy",
        "queue",
    )

    def __init__(self, *, ewma_alpha: float = 0.2) -> None:
        if not 0 < ewma_alpha <= 1:
            raise InvalidSchedulerSettings(f"ewma_alpha must be in (0, 1], got {ewma_alpha}")
        self._alpha = ewma_alpha
        self._nodes: dict[str, NodeState] = {}
        self._deployments: dict[str, DeploymentState] = {}
        self._ended: set[str] = set()
        self._by_node: dict[str, dict[str, None]] = {}
        self._by_workspace: dict[str, dict[str, None]] = {}
        self._ready: dict[str, dict[str, None]] = {}
        self._ready_ids: dict[str, tuple[str, ...]] = {}
        self._workspaces: dict[str, WorkspaceSpec] = {}
        self._deleted: set[str] = set()
        self._serials: dict[str, int] = {}
        self._failed_on: dict[tuple[str, str], int] = {}
        self._tasks: dict[str, QueuedTask] = {}
        self._assignments: dict[str, Assignment] = {}
        self._finished: dict[str, None] = {}
        self._cancelling: dict[str, str] = {}
        self._desired: dict[str, int] = {}
        """Workspace -> the replicas its last `ReplicasScaled` asked for."""
        self._rollout_failures: dict[str, int] = {}
        """Workspace -> replicas of its newest revision that failed while older ones run."""
        self._keys: dict[str, tuple[str, str, float]] = {}
        """Idempotency key -> (task id, request digest, claim time (s)), oldest first."""
        self._unchecked: dict[str, tuple[str, str]] = {}
        """Keyed task id -> (key, request digest), awaiting its `IdempotencyChecked`."""
        self._ws_in_flight: dict[str, int] = {}
        self._ws_latency: dict[str, float] = {}
        self._ws_occupancy: dict[str, float] = {}
        self._arrivals = 0
        self._ws_arrivals: dict[str, int] = {}
        self.queue = WaitQueue()

    # -- folding -------------------------------------------------------------------------

    def apply(self, envelope: Envelope) -> None:
        """Fold one event at its envelope's time. Unknown event types are ignored."""
        self.apply_event(envelope.event, envelope.occurred_at)

    def apply_event(self, event: Event, at: datetime) -> None:
        """Fold `event` as if it occurred at `at` (UTC-aware): used for the events the
        core itself decides, before they come back from the bus."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event, epoch_s(at))

    @classmethod
    def from_envelopes(
        cls, envelopes: Iterable[Envelope], *, ewma_alpha: float = 0.2
    ) -> ClusterState:
        """A state folded from `envelopes` in order."""
        state = cls(ewma_alpha=ewma_alpha)
        for envelope in envelopes:
            state.apply(envelope)
        return state

    def copy(self) -> ClusterState:
        """An independent copy (records are frozen and shared; containers are copied)."""
        other = ClusterState(ewma_alpha=self._alpha)
        for name in ClusterState.__slots__:
            value = getattr(self, name)
            if isinstance(value, dict):
                value = {k: dict(v) if isinstance(v, dict) else v for k, v in value.items()}
            elif isinstance(value, set):
                value = set(value)
            elif isinstance(value, WaitQueue):
                value = value.copy()
            setattr(other, name, value)
        return other

    # -- reading -------------------------------------------------------------------------

    @property
    def nodes(self) -> Mapping[str, NodeState]:
        """Every node ever registered (lost ones with status LOST), by id."""
        return self._nodes

    @property
    def deployments(self) -> Mapping[str, DeploymentState]:
        """Live replicas (requested, starting, ready), by id."""
        return self._deployments

    @property
    def workspaces(self) -> Mapping[str, WorkspaceSpec]:
        """Registered, not deleted workspaces, by id."""
        return self._workspaces

    @property
    def tasks(self) -> Mapping[str, QueuedTask]:
        """Tasks submitted and not finished (waiting, in flight or awaiting a retry)."""
        return self._tasks

    @property
    def assignments(self) -> Mapping[str, Assignment]:
        """In-flight attempts by task id; each holds one slot of its replica."""
        return self._assignments

    @property
    def cancelling(self) -> Mapping[str, str]:
        """Live tasks whose cancel was requested, with the request's reason."""
        return self._cancelling

    def cancels_due(self) -> list[TaskCancelled]:
        """A `TaskCancelled` for each cancelling task with no attempt in flight, in
        request order (fold them to end the tasks)."""
        return [
            TaskCancelled(task_id, self._tasks[task_id].workspace_id, reason)
            for task_id, reason in self._cancelling.items()
            if task_id not in self._assignments
        ]

    def claimed_keys(self) -> dict[str, str]:
        """Idempotency key -> the task holding it, for the claims not yet forgotten."""
        return {key: claim[0] for key, claim in self._keys.items()}

    def keys_due(self, now: datetime) -> list[IdempotencyChecked]:
        """The verdict for each keyed task awaiting one, in submission order: a repeat of
        the task that claims its key when one does at `now` (within the window), else the
        key's first. Fold each before the next is made (`rounds.check_keys`)."""
        now_s = epoch_s(now)
        verdicts: list[IdempotencyChecked] = []
        claimed: dict[str, tuple[str, str]] = {}
        for task_id, (key, digest) in self._unchecked.items():
            claim = self._keys.get(key)
            if key in claimed:
                original, original_digest = claimed[key]
            elif claim is not None and now_s - claim[2] < IDEMPOTENCY_WINDOW_S:
                original, original_digest = claim[0], claim[1]
            else:
                original, original_digest = task_id, digest
                claimed[key] = (task_id, digest)
            workspace_id = self._tasks[task_id].workspace_id
            verdicts.append(
                IdempotencyChecked(task_id, workspace_id, key, original, original_digest)
            )
        return verdicts

    @property
    def in_flight_by_workspace(self) -> Mapping[str, int]:
        """Tasks in flight per workspace (absent means 0): the fair-share input."""
        return self._ws_in_flight

    def is_deleted(self, workspace_id: str) -> bool:
        return workspace_id in self._deleted

    def known_workspace_ids(self) -> list[str]:
        """Sorted ids of registered or deleted workspaces and of any with live replicas."""
        return sorted(self._workspaces.keys() | self._deleted | self._by_workspace.keys())

    def ready_deployment_ids(self, workspace_id: str) -> tuple[str, ...]:
        """Ids of the workspace's ready replicas, in the order they became ready."""
        ids = self._ready_ids.get(workspace_id)
        if ids is None:
            ids = tuple(self._ready.get(workspace_id, ()))
            self._ready_ids[workspace_id] = ids
        return ids

    def live_deployment_ids(self, workspace_id: str) -> tuple[str, ...]:
        """Ids of the workspace's live replicas (any phase), in request order."""
        return tuple(self._by_workspace.get(workspace_id, ()))

    def node_deployment_ids(self, node_id: str) -> tuple[str, ...]:
        """Ids of the live replicas on `node_id`, in request order."""
        return tuple(self._by_node.get(node_id, ()))

    def arrivals(self, workspace_id: str) -> int:
        """How many of the workspace's tasks were submitted (as folded), ever."""
        return self._ws_arrivals.get(workspace_id, 0)

    def slot_time_s(self, workspace_id: str) -> float | None:
        """EWMA of how long the workspace's successful attempts held their slot: from
        their dispatch to their completion as folded (the container's time and the trip
        through the log both ways), the capacity a task really takes (None before any)."""
        return self._ws_occupancy.get(workspace_id)

    def workspace_latency_s(self, workspace_id: str) -> float | None:
        """EWMA of the workspace's processing time across all nodes (None before any)."""
        return self._ws_latency.get(workspace_id)

    def deployment_serial(self, workspace_id: str) -> int:
        """How many replicas of the workspace were ever requested: seeds new replica ids."""
        return self._serials.get(workspace_id, 0)

    def desired_replicas(self, workspace_id: str) -> int | None:
        """What the workspace's last `ReplicasScaled` asked for (None: never scaled)."""
        return self._desired.get(workspace_id)

    def rollout_failures(self, workspace_id: str) -> int:
        """Replicas of the workspace's newest revision that failed while replicas of an
        older one ran (reset by each new revision)."""
        return self._rollout_failures.get(workspace_id, 0)

    def deployment_failures(self, workspace_id: str, node_id: str) -> int:
        """How many replicas of the workspace failed on the node."""
        return self._failed_on.get((workspace_id, node_id), 0)

    # -- nodes ---------------------------------------------------------------------------

    def _node_registered(self, ev: NodeRegistered, at: float) -> None:
        old = self._nodes.get(ev.node_id)
        fields: dict[str, Any] = {
            "host": ev.host,
            "address": ev.address,
            "region": ev.region,
            "runtime": ev.runtime,
            "proxy_cert_sha256": ev.proxy_cert_sha256,
            "gpus": _count_gpus(ev.gpus),
            "status": NodeStatus.ACTIVE,
            "lost_at_s": None,
        }
        if old is not None and old.status is NodeStatus.REVOKED:
            return  # a redelivered registration must not bring a revoked node back
        if old is None:
            # Dispatches folded before the node was known (topics replay in any order
            # relative to each other) already hold its slots.
            held = sum(1 for a in self._assignments.values() if a.node_id == ev.node_id)
            self._nodes[ev.node_id] = NodeState(
                node_id=ev.node_id, last_heartbeat_s=at, in_flight=held, **fields
            )
            self._by_node[ev.node_id] = {}
        else:
            heartbeat = max(old.last_heartbeat_s, at)
            self._nodes[ev.node_id] = replace(old, last_heartbeat_s=heartbeat, **fields)

    def _node_heartbeat(self, ev: NodeHeartbeat, at: float) -> None:
        old = self._nodes.get(ev.node_id)
        if old is None:
            return
        status, lost_at = old.status, old.lost_at_s
        # A heartbeat sent after the node was declared lost brings it back (empty: its
        # replicas were re-placed); one from before the declaration does not.
        if status is NodeStatus.LOST and lost_at is not None and at > lost_at:
            status, lost_at = NodeStatus.ACTIVE, None
        self._nodes[ev.node_id] = replace(
            old,
            last_heartbeat_s=max(old.last_heartbeat_s, at),
            reported_in_flight=ev.in_flight,
            status=status,
            lost_at_s=lost_at,
        )

    def _node_lost(self, ev: NodeLost, at: float) -> None:
        old = self._nodes.get(ev.node_id)
        if old is None or old.status in (NodeStatus.LOST, NodeStatus.REVOKED):
            return
        self._nodes[ev.node_id] = replace(old, status=NodeStatus.LOST, lost_at_s=at)
        for deployment_id in tuple(self._by_node.get(ev.node_id, ())):
            self._end(deployment_id)

    def _node_revoked(self, ev: NodeRevoked, at: float) -> None:
        old = self._nodes.get(ev.node_id)
        if old is None or old.status is NodeStatus.REVOKED:
            return
        lost_at = old.lost_at_s if old.lost_at_s is not None else at
        self._nodes[ev.node_id] = replace(old, status=NodeStatus.REVOKED, lost_at_s=lost_at)
        for deployment_id in tuple(self._by_node.get(ev.node_id, ())):
            self._end(deployment_id)

    def _node_drained(self, ev: NodeDrained, at: float) -> None:
        old = self._nodes.get(ev.node_id)
        if old is not None and old.status is NodeStatus.ACTIVE:
            self._nodes[ev.node_id] = replace(old, status=NodeStatus.DRAINING)

    # -- deployments ---------------------------------------------------------------------

    def _deployment_requested(self, ev: DeploymentRequested, at: float) -> None:
        dep_id = ev.deployment_id
        if dep_id in self._deployments or dep_id in self._ended or ev.node_id not in self._nodes:
            return
        self._deployments[dep_id] = DeploymentState(
            deployment_id=dep_id,
            node_id=ev.node_id,
            workspace_id=ev.workspace_id,
            gpu_type=normalize_gpu_type(ev.gpu_type),
            gpu_count=ev.gpu_count,
            requested_s=at,
            in_flight=sum(1 for a in self._assignments.values() if a.deployment_id == dep_id),
            revision=ev.revision or 1,
        )
        self._by_node[ev.node_id][dep_id] = None
        self._by_workspace.setdefault(ev.workspace_id, {})[dep_id] = None
        self._serials[ev.workspace_id] = self._serials.get(ev.workspace_id, 0) + 1

    def _deployment_starting(self, ev: DeploymentStarting, at: float) -> None:
        dep = self._deployments.get(ev.deployment_id)
        if dep is not None and dep.phase is DeploymentPhase.REQUESTED:
            self._deployments[dep.deployment_id] = replace(dep, phase=DeploymentPhase.STARTING)

    def _deployment_ready(self, ev: DeploymentReady, at: float) -> None:
        dep = self._deployments.get(ev.deployment_id)
        if dep is None or dep.phase is DeploymentPhase.DRAINING:
            return
        ports = {int(k): v for k, v in ev.host_ports.items() if k.strip().isdigit()}
        self._deployments[dep.deployment_id] = replace(
            dep, phase=DeploymentPhase.READY, host_ports=ports
        )
        ready = self._ready.setdefault(dep.workspace_id, {})
        if dep.deployment_id not in ready:
            ready[dep.deployment_id] = None
            self._ready_ids.pop(dep.workspace_id, None)

    def _deployment_draining(self, ev: DeploymentDraining, at: float) -> None:
        dep = self._deployments.get(ev.deployment_id)
        if dep is None or dep.phase is DeploymentPhase.DRAINING:
            return
        self._deployments[dep.deployment_id] = replace(dep, phase=DeploymentPhase.DRAINING)
        if _discard(self._ready, dep.workspace_id, dep.deployment_id):
            self._ready_ids.pop(dep.workspace_id, None)

    def _deployment_failed(self, ev: DeploymentFailed, at: float) -> None:
        dep = self._deployments.get(ev.deployment_id)
        if dep is not None:
            key = (dep.workspace_id, dep.node_id)
            self._failed_on[key] = self._failed_on.get(key, 0) + 1
            spec = self._workspaces.get(dep.workspace_id)
            if spec is not None and dep.revision == spec.revision and self._outdated(spec):
                ws = dep.workspace_id
                self._rollout_failures[ws] = self._rollout_failures.get(ws, 0) + 1
            self._end(dep.deployment_id)

    def _outdated(self, spec: WorkspaceSpec) -> bool:
        """Whether a live replica of the workspace runs a revision other than its own."""
        return any(
            self._deployments[d].revision != spec.revision
            for d in self._by_workspace.get(spec.workspace_id, ())
        )

    def _deployment_stopped(self, ev: DeploymentStopped, at: float) -> None:
        if ev.deployment_id in self._deployments:
            self._end(ev.deployment_id)

    def _end(self, deployment_id: str) -> None:
        dep = self._deployments.pop(deployment_id)
        self._ended.add(deployment_id)
        self._by_node[dep.node_id].pop(deployment_id, None)
        _discard(self._by_workspace, dep.workspace_id, deployment_id)
        if _discard(self._ready, dep.workspace_id, deployment_id):
            self._ready_ids.pop(dep.workspace_id, None)

    # -- workspaces ----------------------------------------------------------------------

    def _workspace_registered(self, ev: WorkspaceRegistered, at: float) -> None:
        self._workspaces[ev.workspace_id] = WorkspaceSpec.from_event(ev)
        self._deleted.discard(ev.workspace_id)

    def _workspace_updated(self, ev: WorkspaceUpdated, at: float) -> None:
        spec = self._workspaces.get(ev.workspace_id)
        if spec is not None:
            updated = spec.updated(ev)
            if updated.revision != spec.revision:
                self._rollout_failures.pop(ev.workspace_id, None)
            self._workspaces[ev.workspace_id] = updated

    def _replicas_scaled(self, ev: ReplicasScaled, at: float) -> None:
        if ev.workspace_id in self._workspaces:
            self._desired[ev.workspace_id] = ev.replicas

    def _rollout_failed(self, ev: RolloutFailed, at: float) -> None:
        spec = self._workspaces.get(ev.workspace_id)
        if spec is not None and spec.revision == ev.revision:
            self._workspaces[ev.workspace_id] = spec.rolled_back()
            self._rollout_failures.pop(ev.workspace_id, None)

    def _workspace_deleted(self, ev: WorkspaceDeleted, at: float) -> None:
        self._workspaces.pop(ev.workspace_id, None)
        self._desired.pop(ev.workspace_id, None)
        self._rollout_failures.pop(ev.workspace_id, None)
        self._ws_arrivals.pop(ev.workspace_id, None)
        self._deleted.add(ev.workspace_id)

    # -- tasks ---------------------------------------------------------------------------

    def _task_submitted(self, ev: TaskSubmitted, at: float) -> None:
        if ev.task_id in self._tasks or ev.task_id in self._finished:
            return
        task = QueuedTask(
            task_id=ev.task_id,
            workspace_id=ev.workspace_id,
            gpu_type=normalize_gpu_type(ev.gpu_type),
            gpu_count=ev.gpu_count,
            port=ev.param_port,
            priority=ev.priority,
            ttl_s=ev.ttl_s,
            submitted_s=at,
            arrival=self._arrivals,
            payload=TaskPayload.of(ev),
        )
        self._arrivals += 1
        self._ws_arrivals[ev.workspace_id] = self._ws_arrivals.get(ev.workspace_id, 0) + 1
        self._tasks[ev.task_id] = task
        if ev.idempotency_key:
            self._unchecked[ev.task_id] = (ev.idempotency_key, ev.request_digest)
        else:
            self.queue.push(task)

    def _idempotency_checked(self, ev: IdempotencyChecked, at: float) -> None:
        self._forget_keys_before(at - IDEMPOTENCY_WINDOW_S)
        if ev.task_id not in self._unchecked:
            return  # a duplicate verdict, or one of a task already ended
        del self._unchecked[ev.task_id]
        if ev.repeat:
            return  # the scheduler's TaskCancelled that follows ends it
        self._keys.pop(ev.idempotency_key, None)  # an expired claim: the newest goes last
        self._keys[ev.idempotency_key] = (ev.task_id, ev.original_digest, at)
        task = self._tasks.get(ev.task_id)
        if task is not None and ev.task_id not in self._cancelling:
            self.queue.push(task)

    def _forget_keys_before(self, cutoff: float) -> None:
        while self._keys:
            key, (_, _, claimed_at) = next(iter(self._keys.items()))
            if claimed_at >= cutoff:
                return
            del self._keys[key]

    def _task_dispatched(self, ev: TaskDispatched, at: float) -> None:
        task = self._tasks.get(ev.task_id)
        if ev.task_id in self._finished or (task is not None and ev.attempt < task.attempt):
            return  # a late duplicate: the task or this attempt is over
        current = self._assignments.get(ev.task_id)
        if current is not None:
            if current.attempt == ev.attempt:
                return
            self._release(current)
        self.queue.remove(ev.task_id)
        assignment = Assignment(
            task_id=ev.task_id,
            workspace_id=ev.workspace_id,
            node_id=ev.node_id,
            deployment_id=ev.deployment_id,
            attempt=ev.attempt,
            dispatched_s=at,
        )
        self._assignments[ev.task_id] = assignment
        self._occupy(assignment)

    def _task_completed(self, ev: TaskCompleted, at: float) -> None:
        current = self._assignments.get(ev.task_id)
        if current is not None and current.attempt == ev.attempt:
            latency = max(0.0, (ev.finished_at - ev.started_at).total_seconds())
            self._record_success(current, latency, at)
        self._finish(ev.task_id)

    def _task_failed(self, ev: TaskFailed, at: float) -> None:
        current = self._assignments.get(ev.task_id)
        if current is not None and current.attempt == ev.attempt:
            self._release(current)
            self._record_failure(current.node_id, at)
        if not ev.retryable:
            self._finish(ev.task_id)
            return
        task = self._tasks.get(ev.task_id)
        if task is not None and task.attempt <= ev.attempt:
            self._tasks[ev.task_id] = replace(task, attempt=ev.attempt + 1, last_failure=ev)

    def _task_retried(self, ev: TaskRetried, at: float) -> None:
        task = self._tasks.get(ev.task_id)
        current = self._assignments.get(ev.task_id)
        if task is None or ev.attempt < task.attempt:
            return  # unknown, finished, or a duplicate of an older retry
        if current is not None and current.attempt >= ev.attempt:
            return  # this attempt is already dispatched
        if current is not None:
            self._release(current)
        task = replace(
            task,
            attempt=ev.attempt,
            excluded_node_ids=frozenset(ev.excluded_node_ids),
        )
        self._tasks[ev.task_id] = task
        if ev.task_id not in self._cancelling:
            self.queue.push(task)

    def _task_cancel_requested(self, ev: TaskCancelRequested, at: float) -> None:
        if ev.task_id not in self._tasks or ev.task_id in self._cancelling:
            return  # finished (or unknown), or a duplicate request
        self._cancelling[ev.task_id] = ev.reason
        self.queue.remove(ev.task_id)

    def _task_ended(self, ev: TaskCancelled | TaskExpired, at: float) -> None:
        self._finish(ev.task_id)

    def _finish(self, task_id: str) -> None:
        # First terminal event wins: whatever attempt still holds a slot gives it back.
        current = self._assignments.get(task_id)
        if current is not None:
            self._release(current)
        self._tasks.pop(task_id, None)
        self._cancelling.pop(task_id, None)
        self._unchecked.pop(task_id, None)
        self.queue.remove(task_id)
        self._finished[task_id] = None
        if len(self._finished) > FINISHED_MEMORY:
            del self._finished[next(iter(self._finished))]

    def _occupy(self, a: Assignment) -> None:
        self._count_slot(a, +1)
        self._ws_in_flight[a.workspace_id] = self._ws_in_flight.get(a.workspace_id, 0) + 1

    def _release(self, a: Assignment) -> None:
        del self._assignments[a.task_id]
        self._count_slot(a, -1)
        left = self._ws_in_flight.get(a.workspace_id, 0) - 1
        if left > 0:
            self._ws_in_flight[a.workspace_id] = left
        else:
            self._ws_in_flight.pop(a.workspace_id, None)

    def _count_slot(self, a: Assignment, delta: int) -> None:
        # A dispatch folded before its replica or node is known is counted when they
        # appear (`_node_registered`, `_deployment_requested`); clamped at zero anyway.
        dep = self._deployments.get(a.deployment_id)
        if dep is not None:
            self._deployments[a.deployment_id] = replace(
                dep, in_flight=max(0, dep.in_flight + delta)
            )
        node = self._nodes.get(a.node_id)
        if node is not None:
            self._nodes[a.node_id] = replace(node, in_flight=max(0, node.in_flight + delta))

    def _record_success(self, a: Assignment, latency: float, at: float) -> None:
        self._release(a)
        node = self._nodes.get(a.node_id)
        if node is not None:
            self._nodes[a.node_id] = replace(
                node,
                successes=node.successes + 1,
                consecutive_failures=0,
                latency_ewma_s=self._ewma(node.latency_ewma_s, latency),
            )
        dep = self._deployments.get(a.deployment_id)
        if dep is not None:
            self._deployments[a.deployment_id] = replace(
                dep,
                served=dep.served + 1,
                last_served_s=at,
                latency_ewma_s=self._ewma(dep.latency_ewma_s, latency),
            )
        ws_latency = self._ewma(self._ws_latency.get(a.workspace_id), latency)
        self._ws_latency[a.workspace_id] = ws_latency
        if a.dispatched_s:
            held = max(latency, at - a.dispatched_s)
            self._ws_occupancy[a.workspace_id] = self._ewma(
                self._ws_occupancy.get(a.workspace_id), held
            )

    def _record_failure(self, node_id: str, at: float) -> None:
        node = self._nodes.get(node_id)
        if node is not None:
            self._nodes[node_id] = replace(
                node,
                failures=node.failures + 1,
                consecutive_failures=node.consecutive_failures + 1,
                last_failure_s=at,
            )

    def _ewma(self, previous: float | None, sample: float) -> float:
        if previous is None:
            return sample
        return self._alpha * sample + (1.0 - self._alpha) * previous


def _count_gpus(gpus: Iterable[GpuInfo]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for gpu in gpus:
        kind = normalize_gpu_type(gpu.type)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _discard(index: dict[str, dict[str, None]], key: str, item: str) -> bool:
    bucket = index.get(key)
    if bucket is None or item not in bucket:
        return False
    del bucket[item]
    if not bucket:
        del index[key]
    return True


_HANDLERS: dict[type[Event], _Handler] = {
    NodeRegistered: ClusterState._node_registered,
    NodeHeartbeat: ClusterState._node_heartbeat,
    NodeLost: ClusterState._node_lost,
    NodeDrained: ClusterState._node_drained,
    NodeRevoked: ClusterState._node_revoked,
    DeploymentRequested: ClusterState._deployment_requested,
    DeploymentStarting: ClusterState._deployment_starting,
    DeploymentReady: ClusterState._deployment_ready,
    DeploymentDraining: ClusterState._deployment_draining,
    DeploymentFailed: ClusterState._deployment_failed,
    DeploymentStopped: ClusterState._deployment_stopped,
    WorkspaceRegistered: ClusterState._workspace_registered,
    WorkspaceUpdated: ClusterState._workspace_updated,
    WorkspaceDeleted: ClusterState._workspace_deleted,
    ReplicasScaled: ClusterState._replicas_scaled,
    RolloutFailed: ClusterState._rollout_failed,
    TaskSubmitted: ClusterState._task_submitted,
    TaskDispatched: ClusterState._task_dispatched,
    TaskCompleted: ClusterState._task_completed,
    TaskFailed: ClusterState._task_failed,
    TaskRetried: ClusterState._task_retried,
    TaskCancelRequested: ClusterState._task_cancel_requested,
    TaskCancelled: ClusterState._task_ended,
    TaskExpired: ClusterState._task_ended,
    IdempotencyChecked: ClusterState._idempotency_checked,
}
"""The fold, by event type: each handler takes the state, the event and its time (s)."""
