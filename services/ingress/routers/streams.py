"""`GET /user/streamTask?taskID=` (also `&taskID=`), an extension of the NGPU API: one task
of the bearer's workspace as server-sent events (`services.ingress.taskstream`); a task
of another workspace, or unknown, is 404."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from services.ingress.answers import contract_errors, task_stream_event
from services.ingress.auth import Context, WorkspaceAuth
from services.ingress.context import IngressContext
from services.ingress.errors import NotFound, ServiceUnavailable
from services.ingress.routers.ngpu import _docs, _seen_soon, _served, outcome
from services.ingress.taskstream import EventStream, task_events
from services.ingress.taskview import TaskStatus

router = APIRouter(tags=["NGPU API"])
_EVENTS: dict[str, Any] = {"200": {
    "description": "Server-sent events: `state` (`{taskID, state}`, queued or running), "
                   "`output` (`{taskID, attempt, seq, data}`, `data` in base64, "
                   "`content_type` on seq 0; tasks submitted with stream=true), then `end` "
                   "(the queryTask answer).",
    "content": {"text/event-stream": {"schema": task_stream_event()}},
}}  # fmt: skip


async def _stream_task(task_id: str, workspace: WorkspaceAuth, context: IngressContext) -> Response:
    tasks, store = _served(context)
    hub = context.output
    if hub is None:
        raise ServiceUnavailable("streamTask is not served by this process")
    watch = hub.watch(task_id)  # before looking: a change meanwhile is not missed
    try:
        status = tasks.status(task_id) or await store.status(task_id)
        if status is None and await _seen_soon(task_id, tasks):
            status = tasks.status(task_id)
        if status is None or status.workspace_id != workspace.registered.workspace_id:
            raise NotFound(f"unknown task {task_id!r}", field="taskID")
    except BaseException:
        watch.close()
        raise

    def end(ended: TaskStatus) -> dict[str, Any]:
        code, msg, data = outcome(ended)
        return {"result_code": code, "msg": msg, "taskID": task_id, "data": data}

    async def look() -> TaskStatus | None:
        return tasks.status(task_id) or await store.status(task_id)

    return EventStream(task_events(status, watch, end, look), watch, task_id)


# `response_class` only documents the 200 as the event stream alone (the route answers a
# response of its own).
@router.get("/user/streamTask", openapi_extra={**_docs(), "responses": _EVENTS},
            response_class=StreamingResponse, responses=contract_errors())  # fmt: skip
async def stream_task(
    workspace: WorkspaceAuth,
    context: Context,
    taskID: str = Query(..., max_length=64),
) -> Response:
    """Follow a task of this workspace as server-sent events: its state changes, its output
    as it is produced (submitted with `stream=true`), then its end (the queryTask answer)."""
    return await _stream_task(taskID, workspace, context)


@router.get("/user/streamTask&taskID={task_id}", include_in_schema=False)
async def stream_task_amp(task_id: str, workspace: WorkspaceAuth, context: Context) -> Response:
    return await _stream_task(task_id, workspace, context)
