"""`GET /v1/workspaces`: the workspaces, paged (admin token)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Query

from services.ingress.answers import MANAGEMENT_ERRORS, WorkspacePage
from services.ingress.auth import AdminAuth, Context
from services.ingress.errors import BadRequest
from services.ingress.routers.workspaces import workspace_body

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"], responses=MANAGEMENT_ERRORS)

MAX_LIMIT = 1000


def encode_cursor(name: str, workspace_id: str) -> str:
    """Opaque to callers: the last item's place in the listing's order."""
    return base64.urlsafe_b64encode(f"{name}/{workspace_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """Raises `BadRequest` naming `cursor` for anything `encode_cursor` did not make."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    name, slash, workspace_id = text.rpartition("/")
    if not slash or not name or not workspace_id:
        raise BadRequest("not a cursor this listing answered", field="cursor")
    return name, workspace_id


@router.get("", response_model=None, responses={200: {"model": WorkspacePage}})
async def list_workspaces(
    context: Context,
    _: AdminAuth,
    limit: int = Query(100, ge=1, le=MAX_LIMIT, description="Workspaces per page."),
    cursor: str = Query("", max_length=512, description="The `cursor` of the previous page."),
    name: str = Query("", max_length=64, description="Only the workspace of this exact name."),
    name_prefix: str = Query("", max_length=64, description="Only names starting with this."),
) -> dict[str, Any]:
    """`{"workspaces": [...], "cursor"}`: each item as `GET /v1/workspaces/{id}` answers
    it, the Workspace ID included (that route shows it: the operator is trusted with
    it), in the order of (name, workspace_id). `cursor` is there when more follow: pass
    it back for the next page. A workspace created or deleted between pages is listed
    or left out by its place in that order."""
    after = decode_cursor(cursor) if cursor else None
    views = context.follower.directory.workspaces.values()
    keyed = sorted(((v.registered.name, v.registered.workspace_id), v) for v in views
                   if (not name or v.registered.name == name)
                   and v.registered.name.startswith(name_prefix))  # fmt: skip
    page = [(key, v) for key, v in keyed if after is None or key > after][: limit + 1]
    answer: dict[str, Any] = {"workspaces": [workspace_body(v, context) for _, v in page[:limit]]}
    if len(page) > limit:
        answer["cursor"] = encode_cursor(*page[limit - 1][0])
    return answer
