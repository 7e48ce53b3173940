"""Usage pre-aggregated at write time, counted exactly once.

The usage ledger (`usage_ledger`) holds signed entries per (task, terminal event); a
materialized view adds every insert into it to the daily rollup (`usage_daily`, a
`SummingMergeTree` keyed by day, workspace, node, GPU type and revision), so the rollup
is always the sum of the ledger. The writer keeps the ledger right for every task a batch
touches (`reconcile`, pure): after the batch's outcomes are stored, it reads each such
task's winner (its first terminal event by (occurred_at, event_id), from
`task_outcomes`) and what the ledger counts for it, and inserts the difference. So:

- a replayed or duplicated event changes nothing (the ledger already counts the winner);
- a terminal event that supersedes the counted one (earlier in time, arriving later)
  takes the old winner's entry back (-1) and counts the new one when it is a completion;
- a write interrupted between the outcomes and the ledger is completed by the replay,
  which reconciles the same tasks again; and entries counted twice (two writers of one
  task at once) are taken back at the task's next write.

Reads sum the rollup over whole UTC days and the ledger (by response time, its
projection) over the partial days at either end of a window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.rows import LedgerRow


@dataclass(frozen=True, slots=True)
class Winner:
    """A task's first terminal event, as the ledger needs it: `completed` says whether it
    counts; the rest are the fields of its entry (see `LedgerRow`)."""

    task_id: str
    event_id: str
    completed: bool
    ended_at: datetime
    workspace_id: str
    node_id: str
    gpu_type: str
    revision: int
    gpu_us: int

    def entry(self, delta: int) -> LedgerRow:
        return LedgerRow(
            task_id=self.task_id,
            event_id=self.event_id,
            delta=delta,
            ended_at=self.ended_at,
            workspace_id=self.workspace_id,
            node_id=self.node_id,
            gpu_type=self.gpu_type,
            revision=self.revision,
            gpu_us=self.gpu_us,
        )


def reconcile(winners: Mapping[str, Winner], counted: Iterable[LedgerRow]) -> list[LedgerRow]:
    """Pure: the ledger entries that make what the ledger counts (`counted`: each
    (task, event)'s entries summed into one row, `delta` the sum, of the tasks in
    `winners`) equal to what it should count: one for each task whose winner is a
    completion, zero for every other (task, event). Entries of tasks not in `winners`
    are left alone. Ordered by task, then event."""
    current: dict[tuple[str, str], LedgerRow] = {}
    for row in counted:
        if row.task_id in winners and row.delta != 0:
            key = (row.task_id, row.event_id)
            previous = current.get(key)
            delta = row.delta + (previous.delta if previous else 0)
            current[key] = dataclasses.replace(row, delta=delta)
    wanted = {(w.task_id, w.event_id): w for w in winners.values() if w.completed}
    entries: list[LedgerRow] = []
    for key in sorted(current.keys() | wanted.keys()):
        have = current[key].delta if key in current else 0
        want = 1 if key in wanted else 0
        if have == want:
            continue
        source = wanted.get(key)
        entries.append(
            source.entry(want - have)
            if source is not None
            else dataclasses.replace(current[key], delta=want - have)
        )
    return entries


def winner_of(values: Sequence[Any]) -> Winner:
    """A `Winner` from a result row of `WINNERS` (columns in `Winner` order, `kind` for
    `completed`)."""
    task_id, event_id, kind, *rest = values
    return Winner(task_id, event_id, kind == "completed", *rest)
