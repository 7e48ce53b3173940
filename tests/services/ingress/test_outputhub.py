"""The ingress's output hub: each watch of a task gets that task's chunks and statuses in
arrival order; nothing is kept for a task nobody watches; a closed watch is gone; a watch
whose reader falls behind past its cap stops taking chunks (and says so)."""

from __future__ import annotations

from services.ingress.outputhub import OutputHub
from services.ingress.taskview import TaskStatus
from services.output import OutputChunk


def _chunk(task_id: str, seq: int, data: bytes = b"x") -> OutputChunk:
    return OutputChunk(task_id, 1, seq, data)


async def test_a_watch_gets_its_task_s_chunks_and_statuses_in_order() -> None:
    hub = OutputHub()
    watch, twin, other = hub.watch("t1"), hub.watch("t1"), hub.watch("t2")
    running = TaskStatus("t1", "w", "running")
    hub.changed(running)
    hub.emit(_chunk("t1", 0, b"a"))
    hub.emit(_chunk("t2", 0, b"z"))
    hub.emit(_chunk("t1", 1, b"b"))
    assert [await watch.next() for _ in range(3)] == [
        running, _chunk("t1", 0, b"a"), _chunk("t1", 1, b"b")]  # fmt: skip
    assert await twin.next() == running
    assert await other.next() == _chunk("t2", 0, b"z")


def test_nothing_is_kept_for_a_task_nobody_watches() -> None:
    hub = OutputHub()
    hub.emit(_chunk("t1", 0))
    hub.changed(TaskStatus("t1", "w", "running"))
    assert hub.watched() == 0
    watch, twin = hub.watch("t1"), hub.watch("t1")
    assert hub.watched() == 1
    watch.close()
    assert hub.watched() == 1
    twin.close()
    twin.close()  # twice is harmless
    assert hub.watched() == 0
    hub.emit(_chunk("t1", 1))  # dropped: nobody watches any more


async def test_a_watch_past_its_cap_stops_taking_chunks_but_not_statuses() -> None:
    hub = OutputHub(max_pending_bytes=5)
    watch = hub.watch("t1")
    hub.emit(_chunk("t1", 0, b"abc"))
    hub.emit(_chunk("t1", 1, b"def"))  # over the cap: dropped, and so is what follows
    assert watch.lost
    hub.emit(_chunk("t1", 2, b"g"))
    done = TaskStatus("t1", "w", "completed", 200, "abcdefg")
    hub.changed(done)
    assert [await watch.next(), await watch.next()] == [_chunk("t1", 0, b"abc"), done]
