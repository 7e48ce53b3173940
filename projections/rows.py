"""The rows of the projection tables, as values: one frozen dataclass per table.

Field order is column order (`projections.schema` derives each table's columns from its
row class). Every row carries the `event_id` and `schema_version` of the event it came
from. Times are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

OutcomeKind = Literal["completed", "failed", "cancelled", "expired"]
"""Which terminal event ended a task."""

RequeueKind = Literal["failed", "retried"]
"""A retryable failure of an attempt, or the task going back to the queue."""


ARCHIVE_LAYOUT = 1
"""The `layout` of the raw rows written now: the event's body (if it has one) is in
`body`, and blank in `payload`."""


@dataclass(frozen=True, slots=True)
class EventRow:
    """Any event, archived: `payload` is the codec's wire document of the event with its
    body (`request_body` or `response_body`, when it has one) blank, and `body` is that
    body, in its own column so that it can age out while every other field stays
    (`projections.archive` puts them back together). `layout` 0 marks a row archived
    before bodies had their own column: its `payload` is the whole document and `body`
    is empty."""

    event_id: str
    type: str
    topic: str
    key: str
    occurred_at: datetime
    schema_version: int
    payload: str
    body: str
    layout: int


@dataclass(frozen=True, slots=True)
class SubmissionRow:
    """A `TaskSubmitted`; `submitted_at` is its envelope's `occurred_at` (request time)."""

    task_id: str
    event_id: str
    schema_version: int
    submitted_at: datetime
    workspace_id: str
    seq: int
    userkey: str
    btc_address: str
    mode: str
    method: str
    request_url: str
    param_url: str
    param_port: int
    user_ip: str
    request_body: str
    body_encoding: str
    content_type: str
    gpu_type: str
    gpu_count: int
    timeout_s: float
    priority: int
    ttl_s: float


@dataclass(frozen=True, slots=True)
class DispatchRow:
    """A `TaskDispatched`: attempt `attempt` went to this node."""

    task_id: str
    event_id: str
    schema_version: int
    dispatched_at: datetime
    workspace_id: str
    attempt: int
    node_id: str
    node_ip: str
    node_address: str
    deployment_id: str
    host_port: int


@dataclass(frozen=True, slots=True)
class RequeueRow:
    """A retryable `TaskFailed` or a `TaskRetried`: the task is (about to be) waiting
    again. Only used to tell queued from running before the task ends."""

    task_id: str
    event_id: str
    schema_version: int
    requeued_at: datetime
    workspace_id: str
    kind: RequeueKind
    attempt: int
    node_id: str
    code: str
    reason: str
    excluded_node_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """A terminal event. `ended_at` is the response time: `finished_at` of a completion,
    else the event's `occurred_at`. `gpu_us` is GPU time in microseconds
    ((finished - started) x gpu_count, never negative; 0 unless completed). Fields an
    event lacks are empty: "" / 0 / None."""

    task_id: str
    event_id: str
    schema_version: int
    occurred_at: datetime
    workspace_id: str
    kind: OutcomeKind
    attempt: int
    node_id: str
    node_ip: str
    node_address: str
    status_code: int
    response_body: str
    body_encoding: str
    content_type: str
    started_at: datetime | None
    finished_at: datetime | None
    ended_at: datetime
    gpu_type: str
    gpu_count: int
    gpu_us: int
    code: str
    reason: str
    revision: int = 0
    """The workspace revision that answered (a completion's; 0: not recorded)."""


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """An entry of the usage ledger: `delta` (+1 or -1, rarely more) times a completed
    task's winning terminal event is counted in the usage rollups. The writer keeps, for
    every task it writes a terminal event of, the sum of its entries per event equal to
    one for the winner when it is a completion and to zero otherwise
    (`projections.rollup.reconcile`); the rollup adds up the entries, so it counts each
    completed task once whatever was replayed or superseded. The other fields are the
    winner's, as in its `OutcomeRow`."""

    task_id: str
    event_id: str
    delta: int
    ended_at: datetime
    workspace_id: str
    node_id: str
    gpu_type: str
    revision: int
    gpu_us: int


@dataclass(frozen=True, slots=True)
class RollupRow:
    """A row of the daily usage rollup (filled by a materialized view over the ledger,
    never by the writer): completed tasks and GPU microseconds of one UTC day (of the
    response time), workspace, node, GPU type and workspace revision."""

    day: date
    workspace_id: str
    node_id: str
    gpu_type: str
    revision: int
    tasks: int
    gpu_us: int


Row = EventRow | SubmissionRow | DispatchRow | RequeueRow | OutcomeRow | LedgerRow | RollupRow
"""A row of any projection table."""
