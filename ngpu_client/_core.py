"""What the sync and async clients share: each operation as a `Call` (method, path,
whose bearer, query, body, headers) and the decoding of answers, which raises the
`errors` class of every code that is not a success. No I/O here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, TypedDict, Unpack

import httpx

from ngpu_client.errors import MissingBearer, NgpuError, error_for
from ngpu_client.models import DONE, PENDING, decode_data

TASK_ID_HEADER = "X-NGPU-Task-ID"
Auth = Literal["workspace", "admin"]
Bound = date | datetime | str | None
"""A time bound of a listing: a date, a date-time (UTC when naive), or the gateway's text."""


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request of the SDK. `json` is sent when `has_body`; `unbounded_read` lets
    the gateway hold the answer as long as it does (a sync call is bounded by the gateway's
    own `NGPU_SYNC_WAIT_MAX_S`)."""

    method: str
    path: str
    auth: Auth
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    has_body: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    unbounded_read: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    """Where the gateway is and the bearers: the Workspace ID for the NGPU API, the admin
    token for the management API (either may be absent when its calls are not made)."""

    base_url: str
    workspace_id: str | None = None
    admin_token: str | None = None
    timeout: float = 30.0

    def headers(self, call: Call) -> dict[str, str]:
        token = self.workspace_id if call.auth == "workspace" else self.admin_token
        if not token:
            needed = "workspace_id" if call.auth == "workspace" else "admin_token"
            raise MissingBearer(f"{call.method} {call.path} needs the client's {needed}")
        return {"Authorization": f"Bearer {token}", **call.headers}

    def timeout_of(self, call: Call) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, read=None if call.unbounded_read else self.timeout)


def _options(**values: object) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in values.items() if v is not None}  # fmt: skip


def _body(data: Any, btc_address: str) -> dict[str, Any]:
    body: dict[str, Any] = {"data": data}
    if btc_address:
        body["btc_address"] = btc_address
    return body


class TaskOptions(TypedDict, total=False):
    """Options of both submission routes: `btc_address` (checked for the BRC-20 balance),
    `param_port` (a declared container port), `idempotency_key` (the same key and request
    within 24 h answer the first task), `priority` (0-9), `timeout_s` (each attempt's
    container call), `ttl_s` (the wait for capacity)."""

    btc_address: str
    param_port: int
    idempotency_key: str
    priority: int
    timeout_s: float
    ttl_s: float


class RunOptions(TaskOptions, total=False):
    """`run`'s: also `prefer_wait`, whole seconds after which a task without an outcome
    is answered pending (`result_code` 100, its task id) and goes on."""

    prefer_wait: int


class SubmitOptions(TaskOptions, total=False):
    """`submit`'s: also `webhook` (an http(s) URL its events are posted to, signed),
    `webhook_events` (`start`, `completed` or `start,completed`), `stream` (its output
    can be followed as produced)."""

    webhook: str
    webhook_events: str
    stream: bool


def _task(data: Any, options: TaskOptions) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """(body, query, headers) of a submission."""
    key = options.get("idempotency_key")
    headers = {"Idempotency-Key": key} if key else {}
    params = _options(paramPort=options.get("param_port"), priority=options.get("priority"),
                      timeout_s=options.get("timeout_s"), ttl_s=options.get("ttl_s"))  # fmt: skip
    return _body(data, options.get("btc_address", "")), params, headers


def run_call(path: str, data: Any, *, stream: bool = False, **options: Unpack[RunOptions]) -> Call:
    body, params, headers = _task(data, options)
    wait = options.get("prefer_wait")
    if wait is not None:
        headers["Prefer"] = f"wait={wait}"
    if stream:
        headers["Accept"] = "text/event-stream"
    return Call("POST", f"/user/{path.lstrip('/')}", "workspace", params, body, has_body=True,
                headers=headers, unbounded_read=True)  # fmt: skip


def submit_call(param_url: str, data: Any, **options: Unpack[SubmitOptions]) -> Call:
    body, params, headers = _task(data, options)
    params = {"paramUrl": param_url, **params, **_options(
        webhook=options.get("webhook"), webhook_events=options.get("webhook_events"),
        stream=options.get("stream"))}  # fmt: skip
    return Call("POST", "/user/schedulingTask", "workspace", params, body, has_body=True,
                headers=headers)  # fmt: skip


def task_call(method: str, route: str, task_id: str) -> Call:
    return Call(method, route, "workspace", {"taskID": task_id})


def bound(value: Bound) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def list_call(start: Bound, end: Bound, limit: int | None, cursor: str | None) -> Call:
    params = _options(startTime=bound(start), endTime=bound(end), limit=limit, cursor=cursor)
    return Call("GET", "/user/queryTaskList", "workspace", params)


def admin(method: str, path: str, body: Any = None, **params: object) -> Call:
    return Call(method, path, "admin", _options(**params), body, has_body=body is not None)


def answer(response: httpx.Response) -> dict[str, Any]:
    """The decoded body of a successful answer (`{}` for 204), with `taskID` from the
    `X-NGPU-Task-ID` header when the body has none; else the `errors` class of its code.
    A contract answer succeeds with `result_code` 100 or 200, a management one with a
    2xx status."""
    task_id = response.headers.get(TASK_ID_HEADER)
    if response.status_code == 204:
        return {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if response.is_success:
            raise NgpuError(f"not a JSON object: {response.text[:200]!r}",
                            result_code=response.status_code)  # fmt: skip
        raise error_for(response.status_code, response.text[:500] or response.reason_phrase,
                        task_id=task_id)  # fmt: skip
    if task_id and "taskID" not in body:
        body["taskID"] = task_id
    if "result_code" in body:
        code = int(body["result_code"])
        if code in (PENDING, DONE):
            return body
        raise error_for(code, str(body.get("msg", "")), task_id=body.get("taskID"),
                        data=decode_data(body.get("data")), body=body)  # fmt: skip
    if response.is_success:
        return body
    found = body.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    raise error_for(response.status_code, str(error.get("message") or response.text[:500]),
                    field=error.get("field"), task_id=task_id, body=body)  # fmt: skip


def delays(initial: float, maximum: float, factor: float) -> Iterator[float]:
    """Pauses between polls: `initial`, then times `factor` each, at most `maximum`."""
    delay = initial
    while True:
        yield delay
        delay = min(maximum, delay * factor)
