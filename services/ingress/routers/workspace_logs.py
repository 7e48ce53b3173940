"""`GET /v1/workspaces/{id}/logs`: the output of each of the workspace's replicas, read
from their nodes on demand (`services.ingress.replicalogs`; admin token)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from services.ingress.answers import MANAGEMENT_ERRORS, WorkspaceLogs
from services.ingress.auth import AdminAuth, Context
from services.ingress.replicalogs import Replica, ReplicaLogError, read_lines, replicas
from services.ingress.routers.workspaces import _get
from services.nodeagent.logstream import MAX_FOLLOW_S, MAX_TAIL_LINES

router = APIRouter(prefix="/v1/workspaces", tags=["workspaces"], responses=MANAGEMENT_ERRORS)

_QUEUED_LINES = 1000


_LOGS: dict[int | str, dict[str, Any]] = {200: {
    "model": WorkspaceLogs,
    "description": "`follow=false`: each replica's last lines. `follow=true`: NDJSON, one "
                   "object a line: `{deployment_id, node_id, line}`, or `{deployment_id, "
                   "node_id, error}` when a replica's stream fails.",
    "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
}}  # fmt: skip


@router.get("/{workspace_id}/logs", response_model=None, responses=_LOGS)
async def workspace_logs(
    workspace_id: str,
    context: Context,
    _: AdminAuth,
    tail: int = Query(100, ge=0, le=MAX_TAIL_LINES, description="Last lines per replica."),
    follow: bool = Query(False, description="Then stream new lines (NDJSON)."),
    max_s: float = Query(MAX_FOLLOW_S, gt=0, le=MAX_FOLLOW_S, description="Longest follow."),
) -> JSONResponse | StreamingResponse:
    """Each replica's last `tail` lines of output (its log on its node: the process's
    stdout and stderr, with the agent's `[ngpu …]` notes), for the replicas not stopped.

    `follow=false`: `{"replicas": [{"deployment_id", "node_id", "state", "lines",
    "error"}]}`, `error` null or why that node could not be read (a replica never ready
    has no proxy port yet). `follow=true`: `application/x-ndjson`, one object a line:
    `{"deployment_id", "node_id", "line"}` for each of the tails' lines and then each new
    one, `{"deployment_id", "node_id", "error"}` when a replica's stream fails; it ends
    when the client hangs up, after `max_s` (at most an hour), or once every replica's
    stream has ended. Lines are at most 8192 characters (longer ones are cut and end in
    ` [truncated]`)."""
    _get(context, workspace_id)
    found = replicas(context.follower.directory, workspace_id, context.node_call_key)
    if follow:
        return StreamingResponse(
            _follow(context, found, tail, max_s), media_type="application/x-ndjson",
            headers={"Cache-Control": "no-store"},
        )  # fmt: skip
    async with _session() as session:
        answers = await asyncio.gather(*(_tail(context, session, r, tail) for r in found))
    return JSONResponse({"replicas": answers}, headers={"Cache-Control": "no-store"})


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(trust_env=False, auto_decompress=False)


async def _tail(
    context: Context, session: aiohttp.ClientSession, replica: Replica, tail: int
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "deployment_id": replica.deployment_id, "node_id": replica.node_id,
        "state": replica.state, "lines": [], "error": None,
    }  # fmt: skip
    try:
        async for line in read_lines(session, replica, tail=tail, follow=False, max_s=1,
                                     hosts=context.hosts):  # fmt: skip
            answer["lines"].append(line)
    except ReplicaLogError as exc:
        answer["error"] = str(exc)
    return answer


async def _follow(
    context: Context, found: list[Replica], tail: int, max_s: float
) -> AsyncIterator[bytes]:
    """Every replica's stream, merged line by line as they come."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(_QUEUED_LINES)

    async def pump(session: aiohttp.ClientSession, replica: Replica) -> None:
        ids = {"deployment_id": replica.deployment_id, "node_id": replica.node_id}
        try:
            async for line in read_lines(session, replica, tail=tail, follow=True, max_s=max_s,
                                         hosts=context.hosts):  # fmt: skip
                await queue.put({**ids, "line": line})
        except ReplicaLogError as exc:
            await queue.put({**ids, "error": str(exc)})
        finally:
            await queue.put(None)

    async with _session() as session:
        pumps = [asyncio.create_task(pump(session, r)) for r in found]
        try:
            running = len(pumps)
            async with asyncio.timeout(max_s + 5):
                while running:
                    item = await queue.get()
                    if item is None:
                        running -= 1
                    else:
                        yield orjson.dumps(item) + b"\n"
        except TimeoutError:
            pass  # the follow's time is up
        finally:
            for task in pumps:
                task.cancel()
            for task in pumps:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
