"""Pure: what the read side answers — a task's state, detail and status — derived from
its fact rows. The SQL that fetches the facts is in `projections.queries`.

State codes (`taskInfo.state`; the contract fixes only 3 = completed):
0 queued (submitted, or waiting again after a failed attempt), 1 running (dispatched),
3 completed, 4 failed (for good), 5 cancelled, 6 expired. 2 is not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from projections.rows import DispatchRow, OutcomeRow, RequeueRow, SubmissionRow

_CONTRACT_TIME = "%Y-%m-%d %H:%M:%S"


class TaskState(IntEnum):
    """The `state` code of a task (see the module docstring)."""

    QUEUED = 0
    RUNNING = 1
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5
    EXPIRED = 6


_STATE_OF_OUTCOME = {
    "completed": TaskState.COMPLETED,
    "failed": TaskState.FAILED,
    "cancelled": TaskState.CANCELLED,
    "expired": TaskState.EXPIRED,
}


@dataclass(frozen=True, slots=True)
class TaskDetail:
    """Everything `getDetailed` returns for a task; `task_info()` is the contract's
    `taskInfo` object. `workspace_id` is there for the caller to enforce tenancy."""

    seq: int
    userkey: str
    btc_address: str
    workspace_id: str
    task_id: str
    request_url: str
    method: str
    user_ip: str
    node_ip: str
    node_address: str
    request_time: str
    response_time: str
    request: str
    state: TaskState
    response: str
    record_duration_s: int
    gpu_duration_s: int

    def task_info(self) -> dict[str, int | str]:
        """The contract's `taskInfo`: its exact keys (typos included) and types."""
        return {
            "id": self.seq,
            "userkey": self.userkey,
            "btcaddress": self.btc_address,
            "workspaceid": self.workspace_id,
            "taskid": self.task_id,
            "requrl": self.request_url,
            "method": self.method,
            "userip": self.user_ip,
            "nodeip": self.node_ip,
            "nodeaddr": self.node_address,
            "requesttime": self.request_time,
            "responsetime": self.response_time,
            "request": self.request,
            "state": int(self.state),
            "response": self.response,
            "recordDursion": self.record_duration_s,
            "videodursion": 0,
            "gpudursion": self.gpu_duration_s,
            "watermarktime": "",
            "watermarkres": "",
        }


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """What `queryTask` needs. `response` is held as `response_encoding` says ("utf-8"
    text or "base64"); `code`/`reason` explain a failure, cancellation or expiry;
    `status_code` is the container's HTTP status (0 when it did not answer)."""

    task_id: str
    workspace_id: str
    state: TaskState
    status_code: int
    response: str
    response_encoding: str
    code: str
    reason: str
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Completed tasks and their GPU seconds for one key of a grouping."""

    key: str
    tasks: int
    gpu_seconds: float


@dataclass(frozen=True, slots=True)
class NodeUsageRow:
    """What a node served on one UTC day for one revision of one workspace: completed
    tasks and their GPU seconds."""

    day: str
    workspace_id: str
    revision: int
    tasks: int
    gpu_seconds: float


def contract_time(moment: datetime) -> str:
    """`moment` (aware UTC) as the contract writes times: "YYYY-MM-DD HH:MM:SS"."""
    return moment.strftime(_CONTRACT_TIME)


def ceil_seconds(microseconds: int) -> int:
    """Whole seconds, rounded up (any positive time is at least 1); never negative."""
    return max(0, -(-microseconds // 1_000_000))


def _micros(start: datetime, end: datetime) -> int:
    delta = end - start
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def state_of(
    outcome: OutcomeRow | None, dispatches: Sequence[DispatchRow], requeues: Sequence[RequeueRow]
) -> TaskState:
    """The winning outcome's state; else running if the latest dispatch (by attempt, then
    time) is later than the latest requeue, else queued."""
    if outcome is not None:
        return _STATE_OF_OUTCOME[outcome.kind]
    dispatched = max(((d.attempt, d.dispatched_at) for d in dispatches), default=None)
    requeued = max(((r.attempt, r.requeued_at) for r in requeues), default=None)
    if dispatched is None or (requeued is not None and requeued >= dispatched):
        return TaskState.QUEUED
    return TaskState.RUNNING


def serving_node(outcome: OutcomeRow | None, dispatches: Sequence[DispatchRow]) -> tuple[str, str]:
    """(ip, address) of the node that ran the winning attempt, else of the latest
    dispatch, else ("", "")."""
    if outcome is not None and (outcome.node_ip or outcome.node_address):
        return outcome.node_ip, outcome.node_address
    candidates = list(dispatches)
    if outcome is not None and outcome.attempt > 0:
        same = [d for d in dispatches if d.attempt == outcome.attempt]
        candidates = [d for d in same if d.node_id == outcome.node_id] or same or candidates
    if not candidates:
        return "", ""
    latest = max(candidates, key=lambda d: (d.attempt, d.dispatched_at, d.event_id))
    return latest.node_ip, latest.node_address


def build_detail(
    submission: SubmissionRow,
    outcome: OutcomeRow | None,
    dispatches: Sequence[DispatchRow],
    requeues: Sequence[RequeueRow],
) -> TaskDetail:
    """The detail of a task from its first submission, winning outcome and attempts.
    `record_duration_s` runs from request to response time; 0 until the task ends."""
    node_ip, node_address = serving_node(outcome, dispatches)
    return TaskDetail(
        seq=submission.seq,
        userkey=submission.userkey,
        btc_address=submission.btc_address,
        workspace_id=submission.workspace_id,
        task_id=submission.task_id,
        request_url=submission.request_url,
        method=submission.method,
        user_ip=submission.user_ip,
        node_ip=node_ip,
        node_address=node_address,
        request_time=contract_time(submission.submitted_at),
        response_time=contract_time(outcome.ended_at) if outcome else "",
        request=submission.request_body,
        state=state_of(outcome, dispatches, requeues),
        response=outcome.response_body if outcome else "",
        record_duration_s=(
            ceil_seconds(_micros(submission.submitted_at, outcome.ended_at)) if outcome else 0
        ),
        gpu_duration_s=ceil_seconds(outcome.gpu_us) if outcome else 0,
    )


def build_status(
    task_id: str,
    workspace_id: str,
    outcome: OutcomeRow | None,
    dispatches: Sequence[DispatchRow],
    requeues: Sequence[RequeueRow],
) -> TaskStatus:
    """The status of a submitted task from its winning outcome and attempts."""
    return TaskStatus(
        task_id=task_id,
        workspace_id=workspace_id,
        state=state_of(outcome, dispatches, requeues),
        status_code=outcome.status_code if outcome else 0,
        response=outcome.response_body if outcome else "",
        response_encoding=outcome.body_encoding if outcome else "utf-8",
        code=outcome.code if outcome else "",
        reason=outcome.reason if outcome else "",
        ended_at=outcome.ended_at if outcome else None,
    )


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One line of the operator's task list: a task's submission, its state (as
    `state_of` decides it), the node that served its winning attempt (else its latest
    dispatch's) and, once ended, how. `attempts` counts dispatches (the highest attempt
    dispatched); `gpu_us` is 0 unless completed."""

    task_id: str
    workspace_id: str
    submitted_at: datetime
    mode: str
    param_url: str
    state: TaskState
    attempts: int
    node_id: str
    status_code: int
    code: str
    ended_at: datetime | None
    gpu_us: int


@dataclass(frozen=True, slots=True)
class TaskFailure:
    """A task whose first terminal event was a failure for good or an expiry."""

    task_id: str
    workspace_id: str
    kind: str
    ended_at: datetime
    node_id: str
    status_code: int
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class DelayBucket:
    """The queue delays (submission to first dispatch, in seconds) of the tasks first
    dispatched in [start, start + the bucket's length)."""

    start: datetime
    tasks: int
    avg_s: float
    p90_s: float
    max_s: float
