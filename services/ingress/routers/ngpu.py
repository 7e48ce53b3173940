"""The customer's NGPU API (`docs/ngpu-api-integration.md`), served exactly: sync and
async pass-through, task queries, the BRC-20 check. Every route but the BRC-20 check
(a "Common API Interface" of the contract, limited per client IP instead) takes
`Authorization: Bearer <Workspace ID>`; a workspace sees only its own tasks. The
contract's `&`-in-path forms are served beside the `?` forms."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from events import TaskCancelRequested, TaskSubmitted, utc_now
from projections.views import TaskDetail, TaskState
from services.brc20 import Brc20Unavailable, InvalidBtcAddress
from services.ingress import contract_examples as examples
from services.ingress.answers import (
    SSE_EVENT,
    Brc20Check,
    CancelConflict,
    Cancelled,
    DetailedTask,
    InProgress,
    SyncAnswer,
    TaskIds,
    TaskOutcome,
    TaskPending,
    contract_errors,
)
from services.ingress.auth import WORKSPACE_SECURITY_SCHEME, Context, WorkspaceAuth, context_of
from services.ingress.clientip import client_ip, rate_key
from services.ingress.context import IngressContext
from services.ingress.errors import (
    BadRequest,
    GatewayTimeout,
    NotFound,
    RateLimited,
    ServiceUnavailable,
)
from services.ingress.idempotency import (
    KEY_HEADER,
    MAX_KEY_LENGTH,
    VERDICT_WAIT_S,
    KeyedRequest,
    Original,
    keyed_request,
    same_request,
)
from services.ingress.paramurl import container_path
from services.ingress.responses import JsonResponse
from services.ingress.results import DONE, IN_PROGRESS, contract_body, http_status
from services.ingress.store import TaskStore
from services.ingress.streaming import stream_requested, streamed_call, wants_stream
from services.ingress.submission import (
    BRC20_UNAVAILABLE,
    ContractBody,
    check_caller,
    check_rate,
    parse_body,
    publish_submission,
    submission,
    target_port,
)
from services.ingress.taskfollower import TaskFollower
from services.ingress.taskids import issued_at
from services.ingress.tasklist import list_task_ids
from services.ingress.taskoptions import TaskOptions, prefer_wait, task_options
from services.ingress.taskview import TaskStatus
from services.ingress.timebounds import EndTime, StartTime, parse_bound
from services.ingress.webhookparams import webhook_request

router = APIRouter(tags=["NGPU API"])
RESERVED = frozenset({"schedulingTask", "queryTask", "queryTaskList", "getDetailed"})
_DETAIL_WAIT_S = 2.0
_FRESH_S = 10.0
"""A taskID issued this recently may still be on its way from the log to this ingress."""


def _answer(result_code: int, msg: str, **fields: Any) -> JsonResponse:
    return JsonResponse(
        contract_body(result_code, msg, **fields), status_code=http_status(result_code)
    )


TASK_ID_HEADER = "X-NGPU-Task-ID"
"""On every answer of the two submission routes once the task exists, errors included."""


def _of_task(answer: JsonResponse, task_id: str) -> JsonResponse:
    answer.headers[TASK_ID_HEADER] = task_id
    return answer


def outcome(status: TaskStatus) -> tuple[int, str, str]:
    """(result_code, msg, data) of a task's status."""
    # A response that is not UTF-8 stays base64 (lossless; the contract's `data` is a string).
    body = status.body
    match status.phase:
        case "queued" | "running":
            return IN_PROGRESS, f"the task is {status.phase}", ""
        case "completed" if status.status_code < 400:
            return DONE, "success", body
        case "completed":
            return 502, f"the container answered HTTP {status.status_code}", body
        case "failed":
            return (504 if status.code == "timeout" else 502), status.reason, body
        case "expired":
            return 503, status.reason or "no capacity before the task's TTL", ""
        case _:
            return 410, f"the task was cancelled: {status.reason}", ""


def _served(context: IngressContext) -> tuple[TaskFollower, TaskStore]:
    """The task follower and store this route needs (503 where they are not running)."""
    if context.tasks is None or context.store is None:
        raise ServiceUnavailable("the NGPU API is not served by this process")
    return context.tasks, context.store


_Param = tuple[str, bool, str, dict[str, Any]]
_STRING: dict[str, Any] = {"type": "string"}
_CONTRACT_BODY: dict[str, Any] = {
    "required": False,
    "content": {"application/json": {"schema": {
        "type": "object",
        "properties": {
            "btc_address": {"type": "string", "description": "Checked for the BRC-20 "
                            "balance when not empty."},
            "data": {"anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}],
                     "description": "Passed through to the container."},
        },
    }, "example": examples.REQUEST_BODY}},
}  # fmt: skip


def _docs(
    *params: _Param,
    bearer: bool = True,
    body: bool = False,
    headers: tuple[_Param, ...] = (),
    example: dict[str, Any] | None = None,
    example_status: int = 200,
) -> dict[str, Any]:
    """A route's `openapi_extra`: the workspace bearer it requires (unless `bearer` is
    false), the query parameters (name, required, description, schema) it reads itself,
    and its `headers` described alike, the contract's request body when it reads one, and
    the contract's `example` of its answer (with `example_status`). The answers' schemas
    are the route's `responses` (`_answers`).
    The two submission routes, the hottest, skip FastAPI's parameter and body resolution
    (about 15 µs a parameter, per request); their own checks name the field in the 400."""
    extra: dict[str, Any] = {
        "parameters": [
            {"name": name, "in": where, "required": required, "description": description,
             "schema": schema}
            for where, listed in (("query", params), ("header", headers))
            for name, required, description, schema in listed
        ],
    }  # fmt: skip
    if bearer:
        extra["security"] = [{name: []} for name in WORKSPACE_SECURITY_SCHEME]
    if body:
        extra["requestBody"] = _CONTRACT_BODY
    if example is not None:
        extra["responses"] = examples.answered(example, example_status)
    return extra


_ACCEPTED = "Accepted, queued or running: result_code 100."


def _answers(
    *answers: tuple[int, type[BaseModel], str], bearer: bool = True
) -> dict[int | str, dict[str, Any]]:
    """A route's `responses`: its answers (status, model, description) and the NGPU API's
    error answers. Documentation only: the routes answer a `JsonResponse` themselves."""
    documented: dict[int | str, dict[str, Any]] = {
        code: {"model": model, "description": text} for code, model, text in answers
    }
    return {**documented, **contract_errors(bearer=bearer)}


_PARAM_PORT: _Param = ("paramPort", False, "A declared container port; default: the first one.",
                       {"type": "integer"})  # fmt: skip
_TASK_OPTIONS: tuple[_Param, ...] = (
    ("timeout_s", False, "Seconds each attempt's container call may take (> 0); default and "
     "most: the workspace's timeout_s.", {"type": "number", "exclusiveMinimum": 0}),
    ("ttl_s", False, "Seconds the task may wait for capacity (> 0); default and most: "
     "NGPU_TASK_TTL_S.", {"type": "number", "exclusiveMinimum": 0}),
    ("priority", False, "0-9, at most the workspace's max_priority (default 0): higher "
     "priorities are placed first.", {"type": "integer", "minimum": 0, "maximum": 9}),
)  # fmt: skip
_WEBHOOK_EVENTS_PATTERN = "^(start|completed)(,(start|completed))?$"
_WEBHOOK: tuple[_Param, ...] = (
    ("webhook", False, "An http(s) URL the task's events are posted to, signed (Standard "
     "Webhooks, with the workspace's webhook_secret); not a loopback, private or link-local "
     "address.", {"type": "string", "format": "uri", "maxLength": 2048}),
    ("webhook_events", False, "Which events to post: start, completed, or start,completed "
     "(default completed).", {"type": "string", "pattern": _WEBHOOK_EVENTS_PATTERN}),
)  # fmt: skip
_IDEMPOTENCY_KEY: _Param = (
    KEY_HEADER, False, "1-255 visible ASCII characters. The same key from the same workspace "
    "within a day answers the first task (async: its taskID; sync: its outcome) instead of "
    "creating another; another request (path, port, btc_address, data) under it is a 422.",
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
)  # fmt: skip
_STREAM: _Param = ("stream", False, "`true`: the container's output can be followed as it is "
                   "produced with /user/streamTask (default false: only its state changes and "
                   "its end).", {"type": "boolean", "default": False})  # fmt: skip
_ACCEPT: _Param = ("Accept", False, "With `text/event-stream`: a 200 answer is the container's "
                   "response body (its Content-Type) as it is produced, not the JSON answer.",
                   {"type": "string"})  # fmt: skip
_STREAMED: dict[str, Any] = {"200": {
    "description": "The JSON answer; with `Accept: text/event-stream`, the container's body "
                   "as it is produced, under the container's own Content-Type (its events "
                   "when that is text/event-stream).",
    "content": {"application/json": {"example": examples.SYNC_ANSWER},
                "text/event-stream": {"schema": SSE_EVENT}},
}}  # fmt: skip
_PREFER: _Param = ("Prefer", False, "`wait=N`: after N seconds without an outcome, answer 202 "
                   "with the taskID (result_code 100) and let the task go on.",
                   {"type": "string", "pattern": "^wait=[0-9]{1,5}$"})  # fmt: skip


@router.post("/user/schedulingTask", status_code=202, openapi_extra=_docs(
    ("paramUrl", True, "Path on the container, e.g. sdapi/v1/img2img.", _STRING), _PARAM_PORT,
    *_TASK_OPTIONS, *_WEBHOOK, _STREAM, body=True, headers=(_IDEMPOTENCY_KEY,),
    example=examples.SUBMITTED, example_status=202),
    responses=_answers((202, InProgress, "Queued: its taskID.")))  # fmt: skip
async def scheduling_task(request: Request, workspace: WorkspaceAuth) -> JsonResponse:
    """Async mode: answers the taskID once `TaskSubmitted` is durable (with an
    `Idempotency-Key`, once the scheduler has checked it: a repeat answers the first
    task's taskID)."""
    context = context_of(request)
    tasks, _ = _served(context)
    body = parse_body(await request.body())
    query = request.query_params
    target = container_path(query.get("paramUrl", ""))
    port = target_port(workspace, query.get("paramPort"))
    options = task_options(query, workspace, context.settings)
    hook = await webhook_request(query, context.settings)
    keyed = _keyed(request, workspace, target, port, body)
    known = _known_repeat(context, tasks, workspace, keyed)
    if known is not None:
        return _queued(known)
    await check_caller(context, tasks, workspace, body)
    event = submission(context, request, workspace, body, mode="async", method="schedulingTask",
                       param_url=target, param_port=port, options=options)  # fmt: skip
    if hook is not None:
        event = replace(event, webhook=hook.url, webhook_events=hook.events)
    if stream_requested(query):  # streaming (an extension): followed with /user/streamTask
        event = replace(event, stream=True)
    if keyed is None:
        await publish_submission(context, tasks, event)
        return _queued(event.task_id)
    return _queued(await _publish_keyed(context, tasks, event, keyed))


def _queued(task_id: str) -> JsonResponse:
    answer = _answer(IN_PROGRESS, "SUCCESS! The task is queued", taskID=task_id)
    return _of_task(answer, task_id)


def _keyed(
    request: Request, workspace: WorkspaceAuth, target: str, port: int, body: ContractBody
) -> KeyedRequest | None:
    return keyed_request(
        request.headers, workspace.registered.workspace_id, path=target, port=port,
        btc_address=body.btc_address, payload=body.payload,
    )  # fmt: skip


def _known_repeat(
    context: IngressContext,
    tasks: TaskFollower,
    workspace: WorkspaceAuth,
    keyed: KeyedRequest | None,
) -> str | None:
    """The task holding `keyed`'s key, when this ingress knows it (422 when the request
    differs); the repeat counts against the workspace's rate limit, as any request."""
    if keyed is None:
        return None
    original = tasks.keys.original(keyed.key, utc_now())
    if original is None:
        return None
    check_rate(context, workspace)
    return same_request(keyed, original)


async def _publish_keyed(
    context: IngressContext, tasks: TaskFollower, event: TaskSubmitted, keyed: KeyedRequest
) -> str:
    """Publish a keyed submission and wait for the scheduler's verdict: the id of the task
    that holds the key (`event`'s own, or the first task's; 422 when the first asked
    something else). 503 naming the task when no verdict comes within `VERDICT_WAIT_S`
    (a retry with the same key then finds it)."""
    event = replace(event, idempotency_key=keyed.key, request_digest=keyed.digest)
    verdict = tasks.expect_verdict(event.task_id)
    try:
        await publish_submission(context, tasks, event)
        try:
            checked = await asyncio.wait_for(verdict, VERDICT_WAIT_S)
        except TimeoutError as exc:
            raise ServiceUnavailable(
                "the scheduler has not checked the Idempotency-Key yet; send the request "
                "again with the same key",
                headers={TASK_ID_HEADER: event.task_id},
            ) from exc
    finally:
        tasks.forget_verdict(event.task_id)
    return same_request(keyed, Original(checked.original_task_id, checked.original_digest))


async def _query_task(
    task_id: str, workspace: WorkspaceAuth, context: IngressContext
) -> JsonResponse:
    tasks, store = _served(context)
    status = tasks.status(task_id) or await store.status(task_id)
    if status is None and await _seen_soon(task_id, tasks):
        status = tasks.status(task_id)
    if status is None or status.workspace_id != workspace.registered.workspace_id:
        raise NotFound(f"unknown task {task_id!r}", field="taskID")
    code, msg, data = outcome(status)
    return _answer(code, msg, taskID=task_id, data=data)


@router.get("/user/queryTask", openapi_extra=_docs(example=examples.QUERIED),
            responses=_answers((200, TaskOutcome, "Done: the container's response."),
                               (202, TaskPending, _ACCEPTED)))  # fmt: skip
async def query_task(
    workspace: WorkspaceAuth,
    context: Context,
    taskID: str = Query(..., max_length=64),
) -> JsonResponse:
    """100 while queued or running, 200 with `data` when done, or the failure."""
    return await _query_task(taskID, workspace, context)


@router.get("/user/queryTask&taskID={task_id}", include_in_schema=False)
async def query_task_amp(task_id: str, workspace: WorkspaceAuth, context: Context) -> JsonResponse:
    return await _query_task(task_id, workspace, context)


@router.get("/user/queryTaskList", openapi_extra=_docs(example=examples.TASK_LIST),
            responses=_answers((200, TaskIds, "The task IDs.")))  # fmt: skip
async def query_task_list(
    workspace: WorkspaceAuth,
    context: Context,
    startTime: StartTime = None,
    endTime: EndTime = None,
    limit: int | None = Query(None, ge=1, le=100_000, description="Page size."),
    cursor: str | None = Query(None, max_length=64, description="`cursor` of the last page."),
) -> JsonResponse:
    """The workspace's task ids in submission order. With `limit`, a full page also
    carries `cursor` (pass it back to continue)."""
    tasks, store = _served(context)
    start = parse_bound(startTime, datetime(1970, 1, 1, tzinfo=UTC), end=False, field="startTime")
    end = parse_bound(endTime, datetime(2099, 1, 2, tzinfo=UTC), end=True, field="endTime")
    ids = await list_task_ids(tasks.view, store, workspace.registered.workspace_id, start, end,
                              limit=limit, cursor=cursor)  # fmt: skip
    extra = {"cursor": ids[-1]} if limit is not None and len(ids) == limit else {}
    return _answer(DONE, "success", result_size=len(ids), taskIds=ids, **extra)


async def _seen_soon(task_id: str, tasks: TaskFollower) -> bool:
    """For a taskID issued moments ago that this ingress has not seen (another ingress
    accepted it), wait briefly for it to arrive from the log; whether it did."""
    issued = issued_at(task_id)
    if issued is None or abs((utc_now() - issued).total_seconds()) > _FRESH_S:
        return False
    waited = 0.0
    while tasks.status(task_id) is None and waited < _DETAIL_WAIT_S:
        await asyncio.sleep(0.05)
        waited += 0.05
    return tasks.status(task_id) is not None


def detail_wait_s(linger_s: float, flush: Callable[[], None] | None) -> float:
    """How long getDetailed may wait for a task's projection to catch up with the log: a
    projector in this process (`flush`) is asked to flush, which takes a fraction of a
    second; one elsewhere writes within its linger (every process reads that setting)."""
    return _DETAIL_WAIT_S if flush is not None else _DETAIL_WAIT_S + linger_s


def _behind(detail: TaskDetail | None, known: TaskStatus | None) -> bool:
    """Whether the projected detail lags what the task follower knows of the task."""
    if known is None:
        return False
    return detail is None or (known.ended and detail.state < TaskState.COMPLETED)


async def _detailed(
    task_id: str, workspace: WorkspaceAuth, context: IngressContext
) -> JsonResponse:
    tasks, store = _served(context)
    detail = await store.detail(task_id)
    known = tasks.status(task_id)
    if detail is None and known is None and await _seen_soon(task_id, tasks):
        known = tasks.status(task_id)
    if known is not None and known.workspace_id != workspace.registered.workspace_id:
        raise NotFound(f"unknown task {task_id!r}", field="taskID")  # at once: no waiting
    waited = 0.0
    # What queryTask already answers (a task just accepted, or just ended) may not be
    # projected yet: give the projector a moment, so the two never disagree. A projector
    # in this process is asked to flush rather than waited for to the end of its linger
    # (again on each look: its batch may have missed the task's last event).
    budget = detail_wait_s(context.settings.projector_linger_s, context.flush_projections)
    while _behind(detail, known) and waited < budget:
        if context.flush_projections is not None:
            context.flush_projections()
        await asyncio.sleep(0.05)
        waited += 0.05
        detail = await store.detail(task_id)
    if detail is None or detail.workspace_id != workspace.registered.workspace_id:
        raise NotFound(f"unknown task {task_id!r}", field="taskID")
    return _answer(DONE, "success", taskInfo=detail.task_info())


@router.get("/user/getDetailed", openapi_extra=_docs(example=examples.DETAIL),
            responses=_answers((200, DetailedTask, "The task's `taskInfo`.")))  # fmt: skip
async def get_detailed(
    workspace: WorkspaceAuth,
    context: Context,
    taskID: str = Query(..., max_length=64),
) -> JsonResponse:
    """Every `taskInfo` field of one task of this workspace."""
    return await _detailed(taskID, workspace, context)


@router.get("/user/getDetailed&taskID={task_id}", include_in_schema=False)
async def get_detailed_amp(
    task_id: str, workspace: WorkspaceAuth, context: Context
) -> JsonResponse:
    return await _detailed(task_id, workspace, context)


CANCEL_WAIT_S = 10.0
"""How long `cancelTask` waits for the task's end before answering that it is under way."""


async def _cancel_task(
    task_id: str, workspace: WorkspaceAuth, context: IngressContext
) -> JsonResponse:
    """Publish a `TaskCancelRequested` for a task of this workspace not ended, and wait
    for its end: 200 once cancelled, 409 (with its `state`) when it ended otherwise first,
    202 when it has not ended within `CANCEL_WAIT_S`. An ended task is 409 at once."""
    tasks, store = _served(context)
    ended = tasks.expect(task_id)  # before looking: an end arriving meanwhile is not missed
    try:
        status = tasks.status(task_id) or await store.status(task_id)
        if status is None and await _seen_soon(task_id, tasks):
            status = tasks.status(task_id)
        if status is None or status.workspace_id != workspace.registered.workspace_id:
            raise NotFound(f"unknown task {task_id!r}", field="taskID")
        requested = not status.ended
        if requested:
            if not context.limiter.allow(status.workspace_id):  # each request is a write
                raise RateLimited("too many requests for this workspace; slow down")
            request = TaskCancelRequested(task_id, status.workspace_id)
            await context.publish([request], visible=False)
            try:
                status = await asyncio.wait_for(asyncio.shield(ended), CANCEL_WAIT_S)
            except TimeoutError:
                # Not seen to end here: the projections may know it ended before this
                # ingress followed the log.
                status = tasks.status(task_id) or await store.status(task_id) or status
    finally:
        tasks.forget(task_id, ended)
    if not status.ended:
        return _answer(IN_PROGRESS, "the cancel was requested; the task ends shortly (poll "
                       "queryTask)", taskID=task_id)  # fmt: skip
    if requested and status.phase == "cancelled":
        return _answer(DONE, "the task was cancelled", taskID=task_id)
    state = TaskState[status.phase.upper()]
    return _answer(409, f"the task has already ended: {status.phase}", taskID=task_id,
                   state=int(state))  # fmt: skip


@router.post("/user/cancelTask", openapi_extra=_docs(example=examples.CANCELLED),
             responses=_answers(
    (200, Cancelled, "Cancelled."), (202, InProgress, "The cancel is under way."),
    (409, CancelConflict, "The task had already ended: its `state`.")))  # fmt: skip
async def cancel_task(
    workspace: WorkspaceAuth,
    context: Context,
    taskID: str = Query(..., max_length=64),
) -> JsonResponse:
    """Cancel a task of this workspace: a queued one at once, a running one by aborting its
    container call (its replica's slot frees). 200 when cancelled, 409 with its `state`
    (as `getDetailed`'s) when it had ended, 202 when the cancel is still under way."""
    return await _cancel_task(taskID, workspace, context)


@router.post("/user/cancelTask&taskID={task_id}", include_in_schema=False)
async def cancel_task_amp(task_id: str, workspace: WorkspaceAuth, context: Context) -> JsonResponse:
    return await _cancel_task(task_id, workspace, context)


async def _check_address(address: str, request: Request) -> JsonResponse:
    """No bearer is asked for (one sent is not looked at): the contract lists the check
    among its common interfaces. Each client IP is limited instead, since a lookup may
    reach a paid indexer."""
    context = context_of(request)
    peer = request.client.host if request.client else ""
    caller = client_ip(peer, request.headers.get("x-forwarded-for"), context.proxies)
    if not context.ip_limiter.allow(rate_key(caller)):
        raise RateLimited("too many BRC-20 checks from this client; slow down")
    try:
        check = await context.gate.check(address)
    except InvalidBtcAddress as exc:
        raise BadRequest(str(exc), field="address") from exc
    except Brc20Unavailable as exc:
        raise ServiceUnavailable(BRC20_UNAVAILABLE) from exc
    return JsonResponse(check.as_dict())


@router.get("/brc20/checkAddress", openapi_extra=_docs(bearer=False, example=examples.BRC20_CHECK),
            responses=_answers((200, Brc20Check, "The holdings."), bearer=False))  # fmt: skip
async def check_address(
    request: Request, address: str = Query(..., max_length=128)
) -> JsonResponse:
    """`{"exists", "names", "balances"}` for a BTC address. No bearer; limited per client IP."""
    return await _check_address(address, request)


@router.get("/brc20/checkAddress&address={address}", include_in_schema=False)
async def check_address_amp(address: str, request: Request) -> JsonResponse:
    return await _check_address(address, request)


@router.post("/user/{path:path}", openapi_extra={**_docs(
    _PARAM_PORT, *_TASK_OPTIONS, body=True, headers=(_PREFER, _IDEMPOTENCY_KEY, _ACCEPT)),
    "responses": _STREAMED}, responses=_answers((200, SyncAnswer, "The container's answer."),
    (202, InProgress, "No outcome within `Prefer: wait=N`.")))  # fmt: skip
async def synchronous(path: str, request: Request, workspace: WorkspaceAuth) -> Response:
    """Sync mode: forwards `data` to `path` on the container and answers its response.
    Every answer once the task is published carries its taskID (`X-NGPU-Task-ID`). With
    `Prefer: wait=N`, a task without an outcome after N seconds answers 202 with its
    taskID (result_code 100) and goes on. With an `Idempotency-Key` a repeat waits for
    the first task's outcome. With `Accept: text/event-stream` (and no key), a 200 is the
    container's body as it is produced (`services.ingress.streaming`)."""
    context = context_of(request)
    tasks, store = _served(context)
    if path in RESERVED:
        raise BadRequest(f"{path} is not called with POST", field="path")
    body = parse_body(await request.body())
    target = container_path(path, field="path")
    port = target_port(workspace, request.query_params.get("paramPort"))
    options = task_options(request.query_params, workspace, context.settings)
    preferred = prefer_wait(request.headers.getlist("prefer"))
    keyed = _keyed(request, workspace, target, port, body)
    known = _known_repeat(context, tasks, workspace, keyed)
    if known is not None:
        return await _outcome_of(context, tasks, store, known, options, preferred)
    await check_caller(context, tasks, workspace, body)
    event = submission(context, request, workspace, body, mode="sync", method=path.strip("/"),
                       param_url=target, param_port=port, options=options)  # fmt: skip
    streamable = keyed is None  # a keyed call answers JSON: its task may be another's
    if streamable and context.output and wants_stream(request.headers.getlist("accept")):
        return await streamed_call(context, tasks, context.output, replace(event, stream=True),
                                   options, preferred, sync_answer)  # fmt: skip
    ended = tasks.expect(event.task_id)
    try:
        if keyed is None:
            await publish_submission(context, tasks, event)
        else:
            original = await _publish_keyed(context, tasks, event, keyed)
            if original != event.task_id:
                return await _outcome_of(context, tasks, store, original, options, preferred)
        return await _await_end(context, event.task_id, ended, options, preferred)
    finally:
        tasks.forget(event.task_id, ended)


async def _outcome_of(
    context: IngressContext,
    tasks: TaskFollower,
    store: TaskStore,
    task_id: str,
    options: TaskOptions,
    preferred: int | None,
) -> JsonResponse:
    """The sync answer for an existing task (a repeat's original): at once when it has
    ended, else once it does (as `_await_end`)."""
    ended = tasks.expect(task_id)  # before looking: an end arriving meanwhile is not missed
    try:
        status = tasks.status(task_id) or await store.status(task_id)
        if status is not None and status.ended:
            return sync_answer(status)
        return await _await_end(context, task_id, ended, options, preferred)
    finally:
        tasks.forget(task_id, ended)


async def _await_end(
    context: IngressContext,
    task_id: str,
    ended: asyncio.Future[TaskStatus],
    options: TaskOptions,
    preferred: int | None,
) -> JsonResponse:
    """Wait on `ended` (the task's end, expected before it could be missed) as long as
    the task may take, or `Prefer: wait=N` allows (202, the task goes on), and answer."""
    settings = context.settings
    wait_s = min(
        settings.sync_wait_max_s,
        options.ttl_s + options.timeout_s * settings.task_max_attempts + 5,
    )
    patience = wait_s if preferred is None else min(wait_s, preferred)
    try:
        status = await asyncio.wait_for(asyncio.shield(ended), patience)
    except TimeoutError as exc:
        if patience < wait_s:  # the caller's `Prefer: wait=N` ran out: the task goes on
            msg = f"no outcome within {preferred}s; poll /user/queryTask?taskID={task_id}"
            answer = _answer(IN_PROGRESS, msg, taskID=task_id)
            answer.headers["Preference-Applied"] = f"wait={preferred}"
            return _of_task(answer, task_id)
        raise GatewayTimeout(
            f"no answer within {wait_s:.0f}s; poll /user/queryTask?taskID={task_id}",
            headers={TASK_ID_HEADER: task_id},
        ) from exc
    return sync_answer(status)


def sync_answer(status: TaskStatus) -> JsonResponse:
    """The sync route's answer of an ended task."""
    code, msg, data = outcome(status)
    # A failure names its task in the body too, for getDetailed; success keeps the
    # contract's three fields.
    extra = {} if code == DONE else {"taskID": status.task_id}
    return _of_task(_answer(code, msg, data=data, **extra), status.task_id)
