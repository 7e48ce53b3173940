"""How far a reader is in catching up with the log, logged every few seconds while it
reads what was there when it started (a long replay shows it is moving, and how fast)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from services.bus.protocol import Consumer, Record

log = logging.getLogger(__name__)


class CatchUp:
    """`name` is catching up from `positions` (next offsets; partitions not named begin at
    0) to `ends` (the partition ends when it started). `seen(records)` after each batch,
    or `at(positions)` with where the reader is; `done` once every partition has reached
    its end, when `on_done` is called (at once if nothing was behind)."""

    def __init__(
        self,
        name: str,
        positions: Mapping[tuple[str, int], int],
        ends: Mapping[tuple[str, int], int],
        every_s: float = 3.0,
        *,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.every_s = every_s
        self._left = {p: end for p, end in ends.items() if positions.get(p, 0) < end}
        self._ends = dict(self._left)
        self._from = {p: positions.get(p, 0) for p in self._left}
        self.total = sum(end - self._from[p] for p, end in self._left.items())
        self.read = 0
        self._started = self._logged = time.monotonic()
        self._on_done = on_done
        self._settle()

    @property
    def done(self) -> bool:
        return not self._left

    def seen(self, records: Sequence[Record]) -> None:
        if self.done:
            return
        for record in records:
            where = (record.topic, record.partition)
            end = self._left.get(where)
            if end is None:
                continue
            self.read += 1
            if record.offset + 1 >= end:
                del self._left[where]
        self._settle()

    def at(self, positions: Mapping[tuple[str, int], int]) -> None:
        """The reader's `positions` now (`Consumer.positions`, after handling what it
        fetched). A partition it no longer holds is not waited for: another member of
        its group reads it. So is one whose position passed its end with no record to
        hand out (retention deleted them)."""
        if self.done:
            return
        for where, end in list(self._left.items()):
            position = positions.get(where)
            if position is None or position >= end:
                del self._left[where]
        passed = sum(
            min(positions.get(p, end), end) - self._from[p] for p, end in self._ends.items()
        )
        self.read = max(self.read, passed)
        self._settle()

    async def fetched(self, records: Sequence[Record], consumer: Consumer) -> None:
        """After each fetch of a reader without a group: `seen(records)`, and when the
        fetch was empty, `at` the consumer's positions (a partition may hold no record
        below its end any more: its position is past them)."""
        if self.done:
            return
        self.seen(records)
        if not records and not self.done:
            self.at(await consumer.positions())

    def _settle(self) -> None:
        now = time.monotonic()
        if self.total and (self.done or now - self._logged >= self.every_s):
            self._log(now)
        if self.done and self._on_done is not None:
            on_done, self._on_done = self._on_done, None
            on_done()

    def _log(self, now: float) -> None:
        self._logged = now
        took = max(now - self._started, 1e-9)
        state = "caught up" if self.done else "catching up"
        read = min(self.read, self.total)
        log.info("%s: %s, %d of %d records (%.0f/s)",
                 self.name, state, read, self.total, self.read / took)  # fmt: skip


async def catching_up(
    name: str, consumer: Consumer, *, on_done: Callable[[], None] | None = None
) -> CatchUp:
    """A `CatchUp` of `consumer` (started) from where it is now to the ends of the
    partitions it holds now."""
    ends = await consumer.ends()
    return CatchUp(name, await consumer.positions(), ends, on_done=on_done)
