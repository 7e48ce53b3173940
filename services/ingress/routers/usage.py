"""Everyone's own numbers: a workspace's usage (`GET /user/usage`, its bearer) and what a
node served (`GET /v1/nodes/{node_id}/usage`, the node's own token). Both read the
rollup the admin's `GET /v1/analytics/usage` reads, so a slice of it has the same numbers.

A node's provider never learns a Workspace ID (it is the customer's credential): the
workspaces it served are named by their name and `workspace_hash`, the short hash the
logs and metrics use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Query

from services.ingress.answers import MANAGEMENT_ERRORS, NodeUsage, WorkspaceUsage, contract_errors
from services.ingress.auth import Context, NodeAuth, WorkspaceAuth
from services.ingress.context import IngressContext
from services.ingress.errors import ServiceUnavailable
from services.ingress.responses import JsonResponse
from services.ingress.results import DONE, contract_body, http_status
from services.ingress.routers.ngpu import _docs
from services.ingress.store import TaskStore
from services.ingress.timebounds import EndTime, From, StartTime, To, parse_bound
from services.logs import workspace_hash

router = APIRouter()
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(2099, 1, 2, tzinfo=UTC)


def _store(context: IngressContext) -> TaskStore:
    if context.store is None:
        raise ServiceUnavailable("usage is not served by this process")
    return context.store


@router.get(
    "/user/usage",
    tags=["NGPU API"],
    response_model=None,
    responses={200: {"model": WorkspaceUsage}, **contract_errors()},
    openapi_extra=_docs(),
)
async def workspace_usage(
    workspace: WorkspaceAuth,
    context: Context,
    startTime: StartTime = None,
    endTime: EndTime = None,
    group_by: Literal["day", "gpu_type"] = Query("day", description="UTC day or GPU type."),
) -> JsonResponse:
    """The workspace's own completed tasks and GPU seconds, by day or GPU type: the
    admin's `/v1/analytics/usage?workspace_id=…` for this workspace only."""
    start = parse_bound(startTime, _EARLIEST, end=False, field="startTime")
    end = parse_bound(endTime, _LATEST, end=True, field="endTime")
    workspace_id = workspace.registered.workspace_id
    rows = await _store(context).usage(group_by, start, end, workspace_id)
    body = contract_body(
        DONE, "success", group_by=group_by, startTime=start.isoformat(),
        endTime=end.isoformat(), tasks=sum(r.tasks for r in rows),
        gpu_seconds=sum(r.gpu_seconds for r in rows),
        rows=[{"key": r.key, "tasks": r.tasks, "gpu_seconds": r.gpu_seconds} for r in rows],
    )  # fmt: skip
    return JsonResponse(body, status_code=http_status(DONE))


@router.get(
    "/v1/nodes/{node_id}/usage", tags=["nodes"], response_model=None,
    responses={200: {"model": NodeUsage}, **MANAGEMENT_ERRORS},
)  # fmt: skip
async def node_usage(
    node: NodeAuth,
    context: Context,
    from_: From = None,
    to: To = None,
) -> JsonResponse:
    """What this node served (its own token): completed tasks and GPU seconds by UTC day,
    workspace (name and hash, never its ID) and revision."""
    start = parse_bound(from_, _EARLIEST, end=False, field="from")
    end = parse_bound(to, _LATEST, end=True, field="to")
    node_id = node.registered.node_id
    rows = await _store(context).node_usage(node_id, start, end)
    workspaces = context.follower.directory.workspaces
    entries = []
    for row in rows:
        known = workspaces.get(row.workspace_id)
        entries.append({
            "day": row.day, "workspace": known.registered.name if known else "",
            "workspace_hash": workspace_hash(row.workspace_id), "revision": row.revision,
            "tasks": row.tasks, "gpu_seconds": row.gpu_seconds,
        })  # fmt: skip
    body = {
        "node_id": node_id, "from": start.isoformat(), "to": end.isoformat(),
        "tasks": sum(r.tasks for r in rows), "gpu_seconds": sum(r.gpu_seconds for r in rows),
        "rows": entries,
    }  # fmt: skip
    return JsonResponse(body)
