"""A sync call that asks for a stream (`Accept: text/event-stream`): its answer is the
container's response body as the dispatcher reads it, chunk by chunk.

The contract: status 200 with the container's `Content-Type` once its first chunk
arrives, then its bytes, and nothing after them; the whole body is still recorded in
`TaskCompleted`. A task that ends before any chunk arrived answers as without the header
(the contract's JSON), except a success, whose recorded body is answered as the stream's
one chunk (so a client that asks for a stream always gets the container's bytes). If the
task ends while chunks were missed (a slow reader, a gap on the output topic), the rest of
the recorded body is sent, provided what was sent is its prefix; a task that fails midway
ends the stream where it is (the status line has gone out). `Prefer: wait=N` and the
sync wait bound the wait for the first chunk as they bound the sync call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from events import TaskSubmitted
from services.ingress.context import IngressContext
from services.ingress.errors import BadRequest, GatewayTimeout
from services.ingress.outputhub import OutputHub, OutputWatch
from services.ingress.outputprefix import OutputPrefix, recorded_body
from services.ingress.responses import JsonResponse
from services.ingress.results import IN_PROGRESS, contract_body, http_status
from services.ingress.submission import publish_submission
from services.ingress.taskfollower import TaskFollower
from services.ingress.taskoptions import TaskOptions
from services.ingress.taskview import TaskStatus
from services.output import OutputChunk

STREAM_TYPE = "text/event-stream"
TASK_ID_HEADER = "X-NGPU-Task-ID"
_OCTETS = "application/octet-stream"


def wants_stream(accept: list[str]) -> bool:
    """Whether the `Accept` header values name `text/event-stream` (with a q above 0)."""
    for media_range in ",".join(accept).split(","):
        kind, *params = media_range.split(";")
        if kind.strip().lower() != STREAM_TYPE:
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q" and value.strip() in ("0", "0.", "0.0", "0.00"):
                break
        else:
            return True
    return False


def stream_requested(query: Mapping[str, str]) -> bool:
    """`schedulingTask`'s `stream` parameter: `true` or `false` (default), else a 400."""
    raw = query.get("stream", "false")
    if raw not in ("true", "false"):
        raise BadRequest("must be true or false", field="stream")
    return raw == "true"


def sync_wait_s(context: IngressContext, options: TaskOptions) -> float:
    """How long a sync call waits for its task: as the sync route does."""
    settings = context.settings
    return min(
        settings.sync_wait_max_s,
        options.ttl_s + options.timeout_s * settings.task_max_attempts + 5,
    )


async def streamed_call(
    context: IngressContext,
    tasks: TaskFollower,
    hub: OutputHub,
    event: TaskSubmitted,
    options: TaskOptions,
    preferred: int | None,
    answer: Callable[[TaskStatus], Response],
) -> Response:
    """Publish `event` (its `stream` set) and answer its output as it arrives; `answer`
    makes the JSON answer of a task that ended before its first chunk."""
    watch = hub.watch(event.task_id)  # before publishing: nothing can be missed
    handed_over = False
    try:
        await publish_submission(context, tasks, event)
        wait_s = sync_wait_s(context, options)
        patience = wait_s if preferred is None else min(wait_s, preferred)
        deadline = time.monotonic() + wait_s
        try:
            first = await asyncio.wait_for(_first(watch), patience)
        except TimeoutError as exc:
            if patience < wait_s:  # the caller's `Prefer: wait=N` ran out: the task goes on
                msg = f"no outcome within {preferred}s; poll /user/queryTask?taskID={event.task_id}"
                body = contract_body(IN_PROGRESS, msg, taskID=event.task_id)
                applied = {TASK_ID_HEADER: event.task_id, "Preference-Applied": f"wait={preferred}"}
                return JsonResponse(body, status_code=http_status(IN_PROGRESS), headers=applied)
            raise GatewayTimeout(
                f"no answer within {wait_s:.0f}s; poll /user/queryTask?taskID={event.task_id}",
                headers={TASK_ID_HEADER: event.task_id},
            ) from exc
        if isinstance(first, TaskStatus):
            if first.phase != "completed" or first.status_code >= 400:
                answer_ = answer(first)
                answer_.headers[TASK_ID_HEADER] = event.task_id
                return answer_
            # It ended before any chunk reached us: its recorded body is the stream.
            whole = {"Content-Type": first.content_type or _OCTETS, TASK_ID_HEADER: event.task_id}
            return Response(recorded_body(first), headers=whole)
        handed_over = True
        # The container's Content-Type as it is (a media_type would gain a charset).
        headers = {"Content-Type": first.content_type or _OCTETS, "Cache-Control": "no-cache",
                   TASK_ID_HEADER: event.task_id}  # fmt: skip
        return _OutputResponse(_relay(first, watch, deadline), watch, headers=headers)
    finally:
        if not handed_over:
            watch.close()


async def _first(watch: OutputWatch) -> OutputChunk | TaskStatus:
    """The task's first chunk, or its end if that comes first."""
    while True:
        item = await watch.next()
        if isinstance(item, OutputChunk) and item.seq == 0:
            return item
        if isinstance(item, TaskStatus) and item.ended:
            return item


async def _relay(first: OutputChunk, watch: OutputWatch, deadline: float) -> AsyncIterator[bytes]:
    """`first`, the chunks of its attempt that follow it in order, then at the task's end
    what the recorded body holds beyond them (when they are its prefix)."""
    prefix = OutputPrefix()
    prefix.take(first)
    yield first.data
    while True:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                item = await watch.next()
        except TimeoutError:
            return  # past the sync wait: the caller can poll the task
        if isinstance(item, OutputChunk):
            if prefix.take(item):
                yield item.data
        elif item.ended:
            if rest := prefix.rest(item):
                yield rest
            return


class _OutputResponse(StreamingResponse):
    """A `StreamingResponse` that closes its watch however the response ends (sent,
    the client gone, or an error before the body began)."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        watch: OutputWatch,
        *,
        headers: dict[str, str],
    ) -> None:
        super().__init__(content, headers=headers)
        self._watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._watch.close()
