"""`/v1/analytics`: GPU-time rollups for billing (admin token)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query

from services.ingress.answers import MANAGEMENT_ERRORS, Usage
from services.ingress.auth import AdminAuth, Context
from services.ingress.errors import ServiceUnavailable
from services.ingress.timebounds import From, To, parse_bound

router = APIRouter(prefix="/v1/analytics", tags=["analytics"], responses=MANAGEMENT_ERRORS)


@router.get("/usage", response_model=None, responses={200: {"model": Usage}})
async def usage(
    context: Context,
    _: AdminAuth,
    group_by: Literal["workspace", "node", "gpu_type", "day", "revision"] = Query(
        "workspace", description="`revision` keys are `<workspace id>@<revision>`."
    ),
    from_: From = None,
    to: To = None,
    workspace_id: str | None = Query(None, max_length=32),
    node_id: str | None = Query(None, max_length=64, description="Only what this node ran."),
) -> dict[str, Any]:
    """Completed tasks and GPU seconds per key, for responses in [from, to), optionally
    of one workspace and/or one node. Read from the daily rollup: a window of whole UTC
    days costs the same however many tasks it holds."""
    if context.store is None:
        raise ServiceUnavailable("analytics are not served by this process")
    start = parse_bound(from_, datetime(1970, 1, 1, tzinfo=UTC), end=False, field="from")
    end = parse_bound(to, datetime(2099, 1, 2, tzinfo=UTC), end=True, field="to")
    rows = await context.store.usage(group_by, start, end, workspace_id, node_id)
    return {
        "group_by": group_by,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "rows": [{"key": r.key, "tasks": r.tasks, "gpu_seconds": r.gpu_seconds} for r in rows],
    }
