"""`/v1/tasks/{taskID}`: one task of the bearer's workspace with its event history
(submitted, each dispatch attempt, retries, cancels, webhook deliveries, its end), read
from the archive (`projections.archive.archived_history`). `getDetailed` stays the
contract's 20 fields; this view is the extra. It never carries a request or response body
(`getDetailed` has them) nor a node's address, port or secret.

The archive is written by the projector: an event is listed once projected, up to the
projector's linger (`NGPU_PROJECTOR_LINGER_S`) after it was logged. When this ingress has
seen the task submitted or ended and the archive has not yet, the answer waits a moment
for it (a projector in this process is asked to flush), as `getDetailed` does; later
events (webhook deliveries after the end, say) may still lag by that linger."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Path

from events import Envelope, TaskSubmitted, is_terminal
from services.ingress.answers import MANAGEMENT_ERRORS, TaskHistory
from services.ingress.auth import WORKSPACE_SECURITY_SCHEME, Context, WorkspaceAuth
from services.ingress.errors import NotFound
from services.ingress.routers.ngpu import _seen_soon, _served, detail_wait_s
from services.ingress.taskview import TaskStatus, fold

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=MANAGEMENT_ERRORS)

_FIELDS: dict[str, tuple[str, ...]] = {
    "TaskSubmitted": ("mode", "method"),
    "TaskDispatched": ("attempt", "node_id", "revision"),
    "TaskCompleted": ("attempt", "node_id", "status_code"),
    "TaskFailed": ("attempt", "node_id", "code", "reason", "retryable", "status_code"),
    "TaskRetried": ("attempt", "reason"),
    "TaskCancelRequested": ("reason",),
    "TaskCancelled": ("reason",),
    "TaskExpired": ("waited_s",),
    "IdempotencyChecked": ("original_task_id",),
    "WebhookAttempted": ("kind", "attempt", "status_code", "latency_ms", "error", "retry_in_s"),
    "WebhookDelivered": ("kind", "attempts", "status_code"),
    "WebhookAbandoned": ("kind", "attempts", "reason"),
}
"""What each event type shows besides its type and time: a whitelist, so that no body,
node address or port, nor a field added later, is shown unless listed here."""

_DESCRIPTION = (
    "One task of the bearer's workspace: its state (`queued`, `running`, `completed`, "
    "`failed`, `cancelled` or `expired`), options, webhook URL and its events in time "
    "order, each with its type, `at` (ISO 8601) and the fields of its kind (`attempt`, "
    "`node_id`, `code`, `reason`, `status_code`, a webhook attempt's `latency_ms`...). "
    "No request or response body (see `/user/getDetailed`). Read from the archive: an "
    "event shows once projected (within `NGPU_PROJECTOR_LINGER_S`). 404 for an unknown "
    "task or one of another workspace."
)


def event_view(envelope: Envelope) -> dict[str, Any]:
    """One event as the history lists it."""
    view: dict[str, Any] = {"type": envelope.type, "at": envelope.occurred_at.isoformat()}
    for name in _FIELDS.get(envelope.type, ()):
        value = getattr(envelope.event, name)
        if name == "error" and not value:
            continue
        if name == "status_code" and not value and envelope.type == "TaskFailed":
            continue
        view[name] = value
    return view


def task_view(task_id: str, history: Sequence[Envelope]) -> dict[str, Any] | None:
    """The answer for a task's history (None when it holds no submission)."""
    submitted = next((e.event for e in history if isinstance(e.event, TaskSubmitted)), None)
    if submitted is None:
        return None
    # The submission first: a skewed clock may time a later event before it.
    status = fold(None, submitted)
    for envelope in history:
        status = fold(status, envelope.event)
    return {
        "taskID": task_id,
        "workspace_id": submitted.workspace_id,
        "state": status.phase if status else "queued",
        "priority": submitted.priority,
        "timeout_s": submitted.timeout_s,
        "ttl_s": submitted.ttl_s,
        "webhook": submitted.webhook or None,
        "events": [event_view(envelope) for envelope in history],
    }


def _behind(history: Sequence[Envelope], known: TaskStatus | None) -> bool:
    """Whether the archive lags what the task follower knows of the task."""
    if known is None:
        return False
    if not any(isinstance(e.event, TaskSubmitted) for e in history):
        return True
    return known.ended and not any(is_terminal(e.event) for e in history)


@router.get(
    "/{taskID}",
    summary="A task with its event history",
    description=_DESCRIPTION,
    response_model=None,
    responses={200: {"model": TaskHistory}},
    openapi_extra={"security": [{name: []} for name in WORKSPACE_SECURITY_SCHEME]},
)
async def get_task(
    workspace: WorkspaceAuth,
    context: Context,
    taskID: str = Path(..., max_length=64, description="The task's ID."),
) -> dict[str, Any]:
    task_id = taskID
    tasks, store = _served(context)
    mine = workspace.registered.workspace_id
    history = await store.history(task_id)
    known = tasks.status(task_id)
    if not history and known is None and await _seen_soon(task_id, tasks):
        known = tasks.status(task_id)
    if known is not None and known.workspace_id != mine:
        raise NotFound(f"unknown task {task_id!r}", field="taskID")
    waited = 0.0
    budget = detail_wait_s(context.settings.projector_linger_s, context.flush_projections)
    while _behind(history, known) and waited < budget:
        if context.flush_projections is not None:
            context.flush_projections()
        await asyncio.sleep(0.05)
        waited += 0.05
        history = await store.history(task_id)
    view = task_view(task_id, history)
    if view is None or view["workspace_id"] != mine:
        raise NotFound(f"unknown task {task_id!r}", field="taskID")
    return view
