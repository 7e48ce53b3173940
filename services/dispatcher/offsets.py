"""Which offsets may be committed when records finish out of order."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class OffsetTracker:
    """Per (topic, partition): the offsets started and not finished. The committable
    position of a partition is its oldest unfinished offset, or one past the newest seen
    when everything finished — so a crash redelivers every unfinished record."""

    _pending: dict[tuple[str, int], set[int]] = field(default_factory=dict)
    _next: dict[tuple[str, int], int] = field(default_factory=dict)

    def started(self, topic: str, partition: int, offset: int) -> None:
        where = (topic, partition)
        self._pending.setdefault(where, set()).add(offset)
        self._next[where] = max(self._next.get(where, 0), offset + 1)

    def finished(self, topic: str, partition: int, offset: int) -> None:
        self._pending.get((topic, partition), set()).discard(offset)

    def committable(self) -> dict[tuple[str, int], int]:
        return {
            where: min(self._pending[where]) if self._pending.get(where) else end
            for where, end in self._next.items()
        }

    @property
    def in_flight(self) -> int:
        return sum(len(offsets) for offsets in self._pending.values())
