"""Turning an NGPU API request into a `TaskSubmitted`: parse the contract body, check the
target port, the rate limit and the BRC-20 gate (the path is checked by
`services.ingress.paramurl`) — all before anything is published, so a refused request
leaves no trace in the log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request

from events import TaskSubmitted, utc_now
from services.brc20 import Brc20AssetMissing, Brc20Unavailable, InvalidBtcAddress
from services.ingress.clientip import client_ip
from services.ingress.context import IngressContext
from services.ingress.directory import WorkspaceView
from services.ingress.errors import (
    AssetMissing,
    BadRequest,
    RateLimited,
    ServiceUnavailable,
)
from services.ingress.taskids import new_task_id, new_task_seq


@dataclass(frozen=True, slots=True)
class ContractBody:
    """`{"btc_address": "...", "data": ...}`: `data` as the bytes to send and their type."""

    btc_address: str
    payload: str
    content_type: str


def parse_body(raw: bytes) -> ContractBody:
    """Parse the contract's request body. `data` may be a string (sent as is: JSON when it
    parses as JSON, else text) or a JSON object or array (sent as JSON); absent or null
    sends an empty body."""
    try:
        doc = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object", field="body")
    btc = doc.get("btc_address") or ""
    if not isinstance(btc, str):
        raise BadRequest("btc_address must be a string", field="btc_address")
    data = doc.get("data")
    if data is None or data == "":
        return ContractBody(btc.strip(), "", "application/json")
    if isinstance(data, str):
        return ContractBody(btc.strip(), data, _type_of_text(data))
    if isinstance(data, dict | list):
        return ContractBody(btc.strip(), orjson.dumps(data).decode(), "application/json")
    raise BadRequest("data must be a string, a JSON object or a JSON array", field="data")


def _type_of_text(text: str) -> str:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return "text/plain; charset=utf-8"
    return "application/json"


def target_port(workspace: WorkspaceView, raw: str | None) -> int:
    """`paramPort` when given (it must be a port the workspace declared), else the first
    declared port."""
    declared = workspace.registered.ports
    if raw is None or raw == "":
        return declared[0]
    if not raw.isdigit() or int(raw) not in declared:
        raise BadRequest(
            f"must be one of the workspace's declared ports {list(declared)}", field="paramPort"
        )
    return int(raw)


async def check_caller(context: IngressContext, workspace: WorkspaceView, btc: str) -> None:
    """Rate limit, then the BRC-20 gate (skipped for an empty address)."""
    if not context.limiter.allow(workspace.registered.workspace_id):
        raise RateLimited("too many requests for this workspace; slow down")
    try:
        await context.gate.require(btc)
    except InvalidBtcAddress as exc:
        raise BadRequest(str(exc), field="btc_address") from exc
    except Brc20AssetMissing as exc:
        raise AssetMissing(str(exc), field="btc_address") from exc
    except Brc20Unavailable as exc:
        raise ServiceUnavailable(f"BRC-20 check unavailable: {exc}") from exc


def submission(
    context: IngressContext,
    request: Request,
    workspace: WorkspaceView,
    body: ContractBody,
    *,
    mode: Any,
    method: str,
    param_url: str,
    param_port: int,
) -> TaskSubmitted:
    """The event for an accepted request (not yet published). `param_url` is a path
    `container_path` accepted, `param_port` one `target_port` accepted."""
    ws = workspace.registered
    peer = request.client.host if request.client else ""
    query = request.url.query
    return TaskSubmitted(
        task_id=new_task_id(utc_now()), seq=new_task_seq(), workspace_id=ws.workspace_id,
        userkey=ws.userkey, btc_address=body.btc_address, mode=mode, method=method,
        request_url=request.url.path + (f"?{query}" if query else ""),
        param_url=param_url, param_port=param_port,
        user_ip=client_ip(peer, request.headers.get("x-forwarded-for"), context.proxies),
        request_body=body.payload, content_type=body.content_type, gpu_type=ws.gpu_type,
        gpu_count=ws.gpu_count, timeout_s=workspace.timeout_s, ttl_s=context.settings.task_ttl_s,
    )  # fmt: skip
