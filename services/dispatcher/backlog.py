"""What the dispatcher holds back while it learns what a partition already holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from events import Event, TaskCompleted, TaskDispatched, TaskFailed, is_terminal
from services.bus import Record


@dataclass(slots=True)
class Backlog:
    """The dispatches of one partition read since the dispatcher began reading it where it
    has not read before (on start, on an assignment, after a seek), below `end`: the
    partition's end as of that moment. Their outcomes, if any, lie later in the same
    partition (a task's events share its key), so none of them may be called before every
    record below `end` has been read. Pure: the caller reads, this remembers.

    `settle` drops a held dispatch once its attempt has an outcome or its task has ended;
    `release` hands out the rest, in log order: what was in flight when the partition's
    last reader stopped, or was never taken. Memory: the held dispatches only (those read
    so far whose outcome was not), all between where reading began and `end`."""

    end: int
    _held: dict[str, dict[int, tuple[TaskDispatched, Record]]] = field(default_factory=dict)

    def hold(self, dispatch: TaskDispatched, record: Record) -> bool:
        """Keep `dispatch` until `release`; False (not kept) when that attempt already is."""
        attempts = self._held.setdefault(dispatch.task_id, {})
        if dispatch.attempt in attempts:
            return False
        attempts[dispatch.attempt] = (dispatch, record)
        return True

    def settle(self, event: Event) -> list[Record]:
        """Forget the dispatches `event` gives an outcome: its attempt's (a completion or a
        failure), or every attempt of its task when it ends the task. Returns their records."""
        task_id = getattr(event, "task_id", None)
        if not isinstance(task_id, str) or task_id not in self._held:
            return []
        attempts = self._held[task_id]
        if is_terminal(event):
            settled = [record for _, record in attempts.values()]
            del self._held[task_id]
            return settled
        if isinstance(event, TaskCompleted | TaskFailed) and event.attempt in attempts:
            _, record = attempts.pop(event.attempt)
            if not attempts:
                del self._held[task_id]
            return [record]
        return []

    def reached_by(self, record: Record) -> bool:
        """Whether `record` is the last one below `end` (or beyond it)."""
        return record.offset + 1 >= self.end

    def release(self) -> list[tuple[TaskDispatched, Record]]:
        """Every dispatch still held, in log order; the backlog is empty after."""
        held = [entry for attempts in self._held.values() for entry in attempts.values()]
        self._held.clear()
        return sorted(held, key=lambda entry: entry[1].offset)

    def __len__(self) -> int:
        return sum(len(attempts) for attempts in self._held.values())
