"""Turning an NGPU API request into a `TaskSubmitted`: parse the contract body, check the
target port, the rate limit, the queue's byte caps and the BRC-20 gate (the path is checked
by `services.ingress.paramurl`) — all before anything is published, so a refused request
leaves no trace in the log — then publish it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from events import Envelope, TaskSubmitted, utc_now
from services.brc20 import Brc20AssetMissing, Brc20Unavailable, InvalidBtcAddress
from services.ingress import rawjson
from services.ingress.clientip import client_ip
from services.ingress.context import IngressContext
from services.ingress.directory import WorkspaceView
from services.ingress.errors import (
    AssetMissing,
    BadRequest,
    QueueFull,
    RateLimited,
    ServiceUnavailable,
)
from services.ingress.taskfollower import TaskFollower
from services.ingress.taskids import new_task_id, new_task_seq
from services.ingress.taskoptions import TaskOptions
from services.ingress.taskview import body_bytes
from services.logs import bind
from services.settings import Settings


@dataclass(frozen=True, slots=True)
class ContractBody:
    """`{"btc_address": "...", "data": ...}`: `data` as the bytes to send and their type."""

    btc_address: str
    payload: str
    content_type: str


def parse_body(raw: bytes) -> ContractBody:
    """Parse the contract's request body. `data` may be a string (sent as is: its value,
    typed JSON when it parses as JSON, else text) or a JSON object or array (sent as the
    exact bytes the body holds for it: numbers, whitespace and escapes untouched); absent,
    null or "" sends an empty body."""
    try:
        doc = rawjson.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object", field="body")
    btc = doc.get("btc_address") or ""
    if not isinstance(btc, str):
        raise BadRequest("btc_address must be a string", field="btc_address")
    btc = _unicode(btc, "btc_address").strip()
    data = doc.get("data")
    if data is None or data == "":
        return ContractBody(btc, "", "application/json")
    if isinstance(data, str):
        return ContractBody(btc, _unicode(data, "data"), _type_of_text(data))
    if isinstance(data, dict | list):
        try:
            text = rawjson.member_text(raw, "data")
        except ValueError as exc:  # deeper than the standard library's scanner goes
            raise BadRequest(str(exc), field="data") from exc
        assert text is not None, "a member parsed is a member found"
        return ContractBody(btc, text, "application/json")
    raise BadRequest("data must be a string, a JSON object or a JSON array", field="data")


def _unicode(text: str, field: str) -> str:
    # JSON's grammar allows a lone surrogate escape ("\ud800"); no UTF-8 text can hold it.
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise BadRequest(f"{field} holds a lone surrogate escape", field=field) from exc
    return text


def _type_of_text(text: str) -> str:
    try:
        rawjson.loads(text.encode())
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


BRC20_UNAVAILABLE = "the BRC-20 check is unavailable; try again later"
"""The 503's message: the provider's own error is logged (`app.py`), not answered."""


def target_port(workspace: WorkspaceView, raw: str | None) -> int:
    """`paramPort` when given (it must be a port the workspace declared), else the first
    declared port."""
    declared = workspace.registered.ports
    if raw is None or raw == "":
        return declared[0]
    # ASCII digits only: "²" is a digit to str.isdigit(), and int() refuses it (a 500).
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5) or int(raw) not in declared:
        raise BadRequest(
            f"must be one of the workspace's declared ports {list(declared)}", field="paramPort"
        )
    return int(raw)


def check_queue_bytes(
    settings: Settings, tasks: TaskFollower, workspace_id: str, size: int
) -> None:
    """Raise `QueueFull` (429, naming the cap) when a body of `size` bytes would take the
    workspace's queued bytes, or every workspace's, over its cap. What counts is what
    `tasks` knows: the tasks not ended it saw submitted since it started following the log."""
    held = tasks.queued_bytes(workspace_id)
    cap = settings.queue_max_bytes_per_workspace
    if held + size > cap:
        raise QueueFull(
            f"the workspace's queued bytes (NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE, {cap}) would "
            f"be exceeded: its queued and running tasks hold {held}, this one {size}; try "
            "again once some end"
        )
    if tasks.queued_bytes() + size > settings.queue_max_bytes:
        # Other workspaces' bytes are theirs: the answer names the cap, not what they hold.
        raise QueueFull(
            f"the gateway's queued bytes (NGPU_QUEUE_MAX_BYTES, {settings.queue_max_bytes}) "
            "would be exceeded; try again later"
        )


def check_rate(context: IngressContext, workspace: WorkspaceView) -> None:
    """Count a request against its workspace's rate limit (`RateLimited` past it)."""
    if not context.limiter.allow(workspace.registered.workspace_id):
        raise RateLimited("too many requests for this workspace; slow down")


async def check_caller(
    context: IngressContext, tasks: TaskFollower, workspace: WorkspaceView, body: ContractBody
) -> None:
    """Rate limit, the queue's byte caps (weighed again as the submission is published:
    `publish_submission`), then the BRC-20 gate (skipped for an empty address), which may
    cost a call to an indexer."""
    check_rate(context, workspace)
    workspace_id = workspace.registered.workspace_id
    check_queue_bytes(context.settings, tasks, workspace_id, body_bytes(body.payload))
    try:
        await context.gate.require(body.btc_address)
    except InvalidBtcAddress as exc:
        raise BadRequest(str(exc), field="btc_address") from exc
    except Brc20AssetMissing as exc:
        raise AssetMissing(str(exc), field="btc_address") from exc
    except Brc20Unavailable as exc:
        raise ServiceUnavailable(BRC20_UNAVAILABLE) from exc


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
    options: TaskOptions | None = None,
) -> TaskSubmitted:
    """The event for an accepted request (not yet published). `param_url` is a path
    `container_path` accepted, `param_port` one `target_port` accepted, `options` what
    `task_options` accepted (default: the workspace's timeout, `NGPU_TASK_TTL_S`, 0)."""
    ws = workspace.registered
    options = options or TaskOptions(workspace.timeout_s, context.settings.task_ttl_s)
    peer = request.client.host if request.client else ""
    query = request.url.query
    task_id = new_task_id(utc_now())
    bind(task_id=task_id)  # on this request's log lines
    return TaskSubmitted(
        task_id=task_id, seq=new_task_seq(), workspace_id=ws.workspace_id,
        userkey=ws.userkey, btc_address=body.btc_address, mode=mode, method=method,
        request_url=request.url.path + (f"?{query}" if query else ""),
        param_url=param_url, param_port=param_port,
        user_ip=client_ip(peer, request.headers.get("x-forwarded-for"), context.proxies),
        request_body=body.payload, content_type=body.content_type, gpu_type=ws.gpu_type,
        gpu_count=ws.gpu_count, timeout_s=options.timeout_s, ttl_s=options.ttl_s,
        priority=options.priority, retry_on_timeout=workspace.retry_on_timeout,
    )  # fmt: skip


async def publish_submission(
    context: IngressContext, tasks: TaskFollower, event: TaskSubmitted
) -> Envelope:
    """Publish `event` durably and record it in the task view. Its body is weighed against
    the queue's caps first (`QueueFull`: nothing published) and counted while it is
    published, so concurrent submissions cannot all pass the same check."""
    size = body_bytes(event.request_body)
    check_queue_bytes(context.settings, tasks, event.workspace_id, size)
    with tasks.publishing(event.workspace_id, size):
        envelope = Envelope(event)
        await context.publish([envelope], visible=False)
        tasks.submitted(event, envelope.occurred_at)
    return envelope
