"""Follows the task topic from this ingress's start: keeps a `TaskView` and wakes the
sync requests waiting for their task to end. Works with any number of ingress processes:
each follows the whole topic."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from events import EventDecodeError, TaskSubmitted, topics
from services.bus import Bus, decode_record
from services.ingress.taskview import TaskStatus, TaskView

log = logging.getLogger(__name__)


class TaskFollower:
    def __init__(self, bus: Bus, capacity: int = 200_000) -> None:
        self.bus = bus
        self.view = TaskView(capacity)
        self._waiters: dict[str, list[asyncio.Future[TaskStatus]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = self.bus.consumer([topics.TASKS], group=None, start="latest")
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="task-follower")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.close()

    def submitted(self, event: TaskSubmitted) -> None:
        """Record a submission this ingress just made durable (it may not have come back
        from the bus yet), so an immediate `queryTask` finds it."""
        self.view.apply(event)

    def status(self, task_id: str) -> TaskStatus | None:
        return self.view.get(task_id)

    def expect(self, task_id: str) -> asyncio.Future[TaskStatus]:
        """A future resolved with the task's terminal status. Call before publishing the
        submission, so the end cannot be missed; `forget` it if the wait is abandoned."""
        future: asyncio.Future[TaskStatus] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, []).append(future)
        return future

    def forget(self, task_id: str, future: asyncio.Future[TaskStatus]) -> None:
        waiting = self._waiters.get(task_id, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._waiters.pop(task_id, None)

    async def _run(self) -> None:
        while True:
            try:
                for record in await self._consumer.fetch(1000, timeout_s=1.0):
                    try:
                        event = decode_record(record).event
                    except EventDecodeError:
                        continue
                    status = self.view.apply(event)
                    if status is not None and status.ended:
                        for future in self._waiters.pop(status.task_id, []):
                            if not future.done():
                                future.set_result(status)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task follower failed; retrying")
                await asyncio.sleep(1.0)
