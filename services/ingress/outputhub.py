"""Routes streamed output and state changes to the requests of this ingress waiting for
them: per task, a watch (a queue) for each waiting request. Chunks come from the
dispatcher (embedded: it emits here, in process) or from the output topic (Kafka:
`services.output.OutputFollower`); statuses from the task follower. Anything for a task
nobody watches is dropped, and a watch is removed when its request ends (`close`)."""

from __future__ import annotations

import asyncio

from services.ingress.taskview import TaskStatus
from services.output import OutputChunk

MAX_PENDING_BYTES = 32 << 20
"""Chunks a watch holds that its reader has not taken (a client reading slower than the
container writes). Beyond it the watch stops taking chunks (`lost`): its reader falls back
on the whole body recorded at the end."""

Item = OutputChunk | TaskStatus


class OutputWatch:
    """What arrives for one task, in arrival order: chunks (`OutputChunk`) and statuses
    (`TaskStatus`). Obtained from `OutputHub.watch`; `close()` it when done."""

    def __init__(self, hub: OutputHub, task_id: str, max_pending_bytes: int) -> None:
        self.hub = hub
        self.task_id = task_id
        self.lost = False
        """Chunks were dropped (over `max_pending_bytes`): the ones after are not taken."""
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._pending_bytes = 0
        self._max_pending_bytes = max_pending_bytes

    def put(self, item: Item) -> None:
        if isinstance(item, OutputChunk):
            if self.lost or self._pending_bytes + len(item.data) > self._max_pending_bytes:
                self.lost = True
                return
            self._pending_bytes += len(item.data)
        self._queue.put_nowait(item)

    async def next(self) -> Item:
        """The next item, waiting for one."""
        item = await self._queue.get()
        if isinstance(item, OutputChunk):
            self._pending_bytes -= len(item.data)
        return item

    def close(self) -> None:
        self.hub._unwatch(self)


class OutputHub:
    """The `OutputSink` of the embedded mode (`emit`), and where the ingress's output
    follower (Kafka) and task follower deliver."""

    def __init__(self, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self.max_pending_bytes = max_pending_bytes
        self._watches: dict[str, list[OutputWatch]] = {}

    def watch(self, task_id: str) -> OutputWatch:
        """Everything that arrives for `task_id` from now on."""
        watch = OutputWatch(self, task_id, self.max_pending_bytes)
        self._watches.setdefault(task_id, []).append(watch)
        return watch

    def emit(self, chunk: OutputChunk) -> None:
        for watch in self._watches.get(chunk.task_id, ()):
            watch.put(chunk)

    def changed(self, status: TaskStatus) -> None:
        for watch in self._watches.get(status.task_id, ()):
            watch.put(status)

    def watched(self) -> int:
        """How many tasks are watched."""
        return len(self._watches)

    def _unwatch(self, watch: OutputWatch) -> None:
        watches = self._watches.get(watch.task_id, [])
        if watch in watches:
            watches.remove(watch)
        if not watches:
            self._watches.pop(watch.task_id, None)
