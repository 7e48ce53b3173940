"""The decision: `schedule(state, request) -> Placement | Unschedulable`, pure.

Only the ready replicas of the task's workspace are candidates (an index in the state),
so a decision costs O(replicas of that workspace), not O(nodes). Filters run per candidate
in profile order, the first rejection files the candidate under that plugin's reason; the
scan starts at an offset seeded by the task id and stops after `max_feasible` feasible
candidates. Feasible ones get the weighted sum of the score plugins; the highest wins and
ties go to the smallest CRC-32 of `task_id + node_id` (then deployment id): the same state
and task always give the same answer, and different tasks spread over tied nodes.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection
from dataclasses import replace

from events.task import TaskDispatched, TaskFailed, TaskRetried, TaskSubmitted
from services.scheduler.decision import Placement, ScheduleRequest, Unschedulable
from services.scheduler.errors import NotRetryableError, StalePlacementError
from services.scheduler.gpu import normalize_gpu_type
from services.scheduler.plugins.base import ScheduleContext
from services.scheduler.plugins.deployment_ready import NO_READY_REPLICA, DeploymentReady
from services.scheduler.profile import Profile, build_profile
from services.scheduler.records import (
    DeploymentPhase,
    DeploymentState,
    NodeState,
    QueuedTask,
    TaskPayload,
)
from services.scheduler.state import ClusterState
from services.scheduler.times import epoch_s

DEFAULT_PROFILE = build_profile()
"""The profile of the default `SchedulerSettings`."""

WORKSPACE = "Workspace"
"""The `Unschedulable.reasons` key when the workspace itself is gone."""

_Candidate = tuple[DeploymentState, NodeState]


def schedule(
    state: ClusterState, request: ScheduleRequest, profile: Profile | None = None
) -> Placement | Unschedulable:
    """Choose the replica for `request` in `state`. Pure: reads `state`, changes nothing
    (fold the `TaskDispatched` built by `dispatch_event` to take the slot)."""
    profile = DEFAULT_PROFILE if profile is None else profile
    if state.is_deleted(request.workspace_id):
        reason = f"workspace {request.workspace_id} was deleted"
        return Unschedulable(request.task_id, {WORKSPACE: (reason,)})
    ctx = _context(state, request)
    ids = state.ready_deployment_ids(request.workspace_id)
    if not ids:
        return _nothing_ready(state, ctx)
    seed = zlib.crc32(request.task_id.encode())
    rejected: dict[tuple[str, str], int] = {}
    feasible = _feasible(state, ctx, ids, seed, profile, rejected)
    if not feasible:
        return Unschedulable(request.task_id, _render(rejected, ctx, profile), len(ids))
    dep, node, score = _best(ctx, feasible, seed, profile)
    return _placement(ctx, dep, node, score, len(feasible))


def _context(state: ClusterState, request: ScheduleRequest) -> ScheduleContext:
    spec = state.workspaces.get(request.workspace_id)
    port = request.port or (spec.ports[0] if spec is not None and spec.ports else 0)
    return ScheduleContext(
        task_id=request.task_id,
        workspace_id=request.workspace_id,
        gpu_type=normalize_gpu_type(request.gpu_type),
        gpu_count=request.gpu_count,
        port=port,
        concurrency=spec.concurrency if spec is not None else 1,
        excluded_node_ids=request.excluded_node_ids,
        now_s=epoch_s(request.now),
        preferred_region=request.preferred_region,
        workspace_latency_s=state.workspace_latency_s(request.workspace_id),
    )


def _feasible(
    state: ClusterState,
    ctx: ScheduleContext,
    ids: tuple[str, ...],
    seed: int,
    profile: Profile,
    rejected: dict[tuple[str, str], int],
) -> list[_Candidate]:
    # The hot loop: locals only, no allocation per candidate beyond the kept pair.
    deployments = state.deployments
    nodes = state.nodes
    calls = profile.filter_calls
    n = len(ids)
    limit = profile.settings.max_feasible or n
    start = seed % n
    kept: list[_Candidate] = []
    for i in range(start, start + n):
        dep = deployments[ids[i % n]]
        node = nodes[dep.node_id]
        for name, call in calls:
            reason = call(ctx, dep, node)
            if reason is not None:
                key = (name, reason)
                rejected[key] = rejected.get(key, 0) + 1
                break
        else:
            kept.append((dep, node))
            if len(kept) >= limit:
                break
    return kept


def _best(
    ctx: ScheduleContext, feasible: list[_Candidate], seed: int, profile: Profile
) -> tuple[DeploymentState, NodeState, float]:
    calls = profile.score_calls
    best_score = float("-inf")
    best: list[_Candidate] = []
    for dep, node in feasible:
        total = 0.0
        for weight, call in calls:
            total += weight * call(ctx, dep, node)
        if total > best_score:
            best_score, best = total, [(dep, node)]
        elif total == best_score:
            best.append((dep, node))
    if len(best) == 1:
        dep, node = best[0]
    else:
        # crc32(node_id, crc32(task_id)) == crc32(task_id + node_id).
        dep, node = min(
            best, key=lambda c: (zlib.crc32(c[1].node_id.encode(), seed), c[0].deployment_id)
        )
    return dep, node, best_score


def _placement(
    ctx: ScheduleContext, dep: DeploymentState, node: NodeState, score: float, feasible: int
) -> Placement:
    if ctx.port:
        container_port, host_port = ctx.port, dep.host_ports[ctx.port]
    else:
        container_port, host_port = next(iter(dep.host_ports.items()))
    return Placement(
        task_id=ctx.task_id,
        workspace_id=ctx.workspace_id,
        node_id=node.node_id,
        deployment_id=dep.deployment_id,
        host=node.host,
        address=node.address,
        container_port=container_port,
        host_port=host_port,
        score=score,
        feasible=feasible,
    )


def _render(
    rejected: dict[tuple[str, str], int], ctx: ScheduleContext, profile: Profile
) -> dict[str, tuple[str, ...]]:
    fields = {
        "gpu_type": ctx.gpu_type,
        "gpu_count": ctx.gpu_count,
        "port": ctx.port,
        "concurrency": ctx.concurrency,
        "workspace_id": ctx.workspace_id,
    }
    reasons: dict[str, tuple[str, ...]] = {}
    for name, _ in profile.filter_calls:
        lines = tuple(
            f"{count} {'node' if count == 1 else 'nodes'} {reason.format_map(fields)}"
            for (plugin, reason), count in sorted(rejected.items())
            if plugin == name
        )
        if lines:
            reasons[name] = lines
    return reasons


def _nothing_ready(state: ClusterState, ctx: ScheduleContext) -> Unschedulable:
    message = NO_READY_REPLICA.format(workspace_id=ctx.workspace_id)
    phases = [state.deployments[d].phase for d in state.live_deployment_ids(ctx.workspace_id)]
    pending = sum(1 for phase in phases if phase is not DeploymentPhase.READY)
    if pending:
        message += f" ({pending} starting)"
    if ctx.workspace_id not in state.workspaces:
        message += " (workspace not registered)"
    return Unschedulable(ctx.task_id, {DeploymentReady.NAME: (message,)})


def dispatch_event(
    state: ClusterState, task: QueuedTask | TaskSubmitted, placement: Placement, attempt: int
) -> TaskDispatched:
    """The `TaskDispatched` that carries out `placement` for attempt `attempt` (1-based),
    with the task's request (`param_url`, body, content type, timeout) copied in.
    Raises `StalePlacementError` if the placement is for another task, or its node or
    replica is no longer registered and ready in `state` (it was decided on another
    state: a bug in the caller)."""
    if task.task_id != placement.task_id or task.workspace_id != placement.workspace_id:
        raise StalePlacementError(f"placement of {placement.task_id} used for {task.task_id}")
    node = state.nodes.get(placement.node_id)
    dep = state.deployments.get(placement.deployment_id)
    if node is None or dep is None or dep.phase is not DeploymentPhase.READY:
        raise StalePlacementError(
            f"replica {placement.deployment_id} on {placement.node_id} is not ready in this state"
        )
    if attempt < 1:
        raise StalePlacementError(f"attempt must be >= 1, got {attempt}")
    payload = task.payload if isinstance(task, QueuedTask) else TaskPayload.of(task)
    return TaskDispatched(
        task_id=task.task_id,
        workspace_id=task.workspace_id,
        attempt=attempt,
        node_id=node.node_id,
        node_ip=node.host,
        node_address=node.address,
        deployment_id=dep.deployment_id,
        host_port=placement.host_port,
        param_url=payload.param_url,
        request_body=payload.request_body,
        body_encoding=payload.body_encoding,
        content_type=payload.content_type,
        timeout_s=payload.timeout_s,
        retry_on_timeout=payload.retry_on_timeout,
        gpu_type=task.gpu_type,
        gpu_count=task.gpu_count,
        revision=dep.revision,
        proxy_cert_sha256=node.proxy_cert_sha256,
        stream=payload.stream,
    )


def retry_event(state: ClusterState, failed: TaskFailed) -> TaskRetried | TaskFailed:
    """What follows a retryable failure: a `TaskRetried` (attempt + 1, never again on the
    failed node nor on any node the task already excluded), or, when every replica of the
    workspace is on an excluded node, the terminal end of the task with that failure
    (`ended_by_exclusions`): no node is left to try. Raises `NotRetryableError` for a
    failure marked not retryable (it is terminal already)."""
    if not failed.retryable:
        raise NotRetryableError(f"{failed.task_id} attempt {failed.attempt} is not retryable")
    task = state.tasks.get(failed.task_id)
    excluded = set(task.excluded_node_ids) if task is not None else set()
    if failed.node_id:
        excluded.add(failed.node_id)
    if no_node_left(state, failed.workspace_id, excluded):
        return ended_by_exclusions(failed)
    return TaskRetried(
        task_id=failed.task_id,
        workspace_id=failed.workspace_id,
        attempt=failed.attempt + 1,
        excluded_node_ids=tuple(sorted(excluded)),
        reason=f"{failed.code}: {failed.reason}",
    )


def no_node_left(state: ClusterState, workspace_id: str, excluded: Collection[str]) -> bool:
    """Whether the workspace has replicas and every one of them is on an `excluded` node:
    a task that excluded those nodes can never run, however long it waits."""
    ids = state.live_deployment_ids(workspace_id)
    return bool(ids) and all(state.deployments[d].node_id in excluded for d in ids)


def ended_by_exclusions(failed: TaskFailed) -> TaskFailed:
    """The terminal form of the task's last failure, for a task no node is left to try."""
    return replace(
        failed, retryable=False, reason=f"{failed.reason} (no other node can take the task)"
    )
