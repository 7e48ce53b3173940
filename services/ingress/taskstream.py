"""`GET /user/streamTask` as server-sent events: one task's state changes, its output
chunks (when it was submitted with `stream`), then its end.

- `event: state`, `data: {"taskID", "state"}`: `queued` or `running`, at the start when
  the task has not ended and at each change after.
- `event: output`, `id: <seq>`, `data: {"taskID", "attempt", "seq", "data"}`: a chunk of
  the container's response as the dispatcher read it, `data` in base64 (chunks split text
  anywhere, even inside a UTF-8 sequence); the first chunk of an attempt (`seq` 0) also
  carries `content_type`. Chunks produced before the stream began are not repeated (the
  end carries the whole output); from a stream that saw `seq` 0, the output events hold
  the whole output: what did not arrive as a chunk before the end (on Kafka, chunks travel
  apart from the end) comes from the recorded body, as the last output event.
- `event: end`, `data`: the task's `queryTask` answer (`result_code`, `msg`, `taskID`,
  `data`); then the stream closes. A task that has already ended answers this at once.

A comment line (`: keep-alive`) goes out every `KEEP_ALIVE_S` while nothing else does."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from services.ingress.outputhub import OutputWatch
from services.ingress.outputprefix import OutputPrefix
from services.ingress.taskview import TaskStatus
from services.output import OutputChunk

KEEP_ALIVE_S = 15.0


def sse(kind: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One server-sent event whose data is `data` as one line of JSON."""
    head = f"event: {kind}\n" + ("" if event_id is None else f"id: {event_id}\n")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def task_events(
    status: TaskStatus,
    watch: OutputWatch,
    end: Callable[[TaskStatus], dict[str, Any]],
    look: Callable[[], Awaitable[TaskStatus | None]],
) -> AsyncIterator[bytes]:
    """The events of the task whose status is `status` as the stream begins, then as
    `watch` reports them; `end` makes the end's data, `look` reads the task's status
    anew (while idle: an end this ingress did not follow is still found)."""
    task_id = status.task_id
    phase = ""
    prefix = OutputPrefix()
    while not status.ended:
        if status.phase != phase:
            phase = status.phase
            yield sse("state", {"taskID": task_id, "state": phase})
        try:
            item = await asyncio.wait_for(watch.next(), KEEP_ALIVE_S)
        except TimeoutError:
            yield b": keep-alive\n\n"
            status = await look() or status
            continue
        if isinstance(item, OutputChunk):
            prefix.take(item)
            yield sse("output", _chunk_data(item), event_id=item.seq)
        else:
            status = item
    if rest := prefix.rest(status):
        last = OutputChunk(task_id, prefix.attempt, prefix.next_seq, rest)
        yield sse("output", _chunk_data(last), event_id=last.seq)
    yield sse("end", end(status))


def _chunk_data(chunk: OutputChunk) -> dict[str, Any]:
    data: dict[str, Any] = {"taskID": chunk.task_id, "attempt": chunk.attempt, "seq": chunk.seq,
                            "data": base64.b64encode(chunk.data).decode()}  # fmt: skip
    if chunk.seq == 0:
        data["content_type"] = chunk.content_type
    return data


class EventStream(StreamingResponse):
    """`text/event-stream` of `events`, closing `watch` however the response ends."""

    def __init__(self, events: AsyncIterator[bytes], watch: OutputWatch, task_id: str) -> None:
        headers = {"Cache-Control": "no-cache", "X-NGPU-Task-ID": task_id}
        super().__init__(events, headers=headers, media_type="text/event-stream")
        self._watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._watch.close()
