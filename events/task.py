"""Task events: one request of a workspace's API, from submission to its one outcome.

Together they carry every field of the contract's `taskInfo` (userkey, btcaddress,
workspaceid, taskid, requrl, method, userip from `TaskSubmitted`; nodeip, nodeaddr from
`TaskDispatched`/`TaskCompleted`; request and response bodies; request time is the
submission envelope's `occurred_at`, response time and GPU time come from
`TaskCompleted`), so projections need no second source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal

from events import topics
from events.base import Event
from events.webhook import WebhookKind

BodyEncoding = Literal["utf-8", "base64"]
"""How a body is held in a `str`: as text, or base64 when the bytes are not UTF-8."""

TaskMode = Literal["sync", "async"]


@dataclass(frozen=True, slots=True)
class TaskEvent(Event):
    KEY_FIELD: ClassVar[str] = "task_id"
    TOPIC: ClassVar[str] = topics.TASKS


@dataclass(frozen=True, slots=True)
class TaskSubmitted(TaskEvent):
    """A caller's request was accepted and is durable; its taskID has been (or will be)
    returned. `seq` is the numeric task id (`taskInfo.id`), assigned once at ingress.
    `param_url` is a validated relative path on the container, `param_port` a port the
    workspace declared. The GPU requirement, timeout and `retry_on_timeout` are copied from
    the workspace so the scheduler and dispatcher need no workspace state."""

    task_id: str
    seq: int
    workspace_id: str
    userkey: str
    btc_address: str
    mode: TaskMode
    method: str
    request_url: str
    param_url: str
    param_port: int
    user_ip: str
    request_body: str
    gpu_type: str
    gpu_count: int
    timeout_s: float
    body_encoding: BodyEncoding = "utf-8"
    content_type: str = "application/json"
    priority: int = 0
    ttl_s: float = 3600.0
    retry_on_timeout: bool = False
    webhook: str = ""
    """An absolute http(s) URL the `webhooks` role posts the task's `webhook_events` to,
    signed (Standard Webhooks); checked at submission and again at each delivery."""
    webhook_events: tuple[WebhookKind, ...] = ()
    idempotency_key: str = ""
    """The caller's `Idempotency-Key`, hashed with the workspace id (`services.ingress.
    idempotency`), or "": a keyed task waits for the scheduler's `IdempotencyChecked`
    before it is queued."""
    request_digest: str = ""
    """A digest of what the task sends to its container (path, port, body), kept with a
    key so a repeat with another request can be told apart; "" without a key."""
    stream: bool = False
    """The submitter asked for the container's output as it is produced (a sync call with
    `Accept: text/event-stream`, or `schedulingTask?stream=true`): the dispatcher hands
    its chunks out (`services.output`) besides recording the whole body."""


@dataclass(frozen=True, slots=True)
class TaskDispatched(TaskEvent):
    """The scheduler assigned attempt `attempt` (1-based) of the task to a ready replica:
    the dispatcher will call `http://node_ip:host_port/param_url`, nothing else (`https`
    when `proxy_cert_sha256` is set: the node's registered certificate, the only one the
    call accepts). The request travels with the dispatch (copied from `TaskSubmitted`) so
    a dispatcher needs no other event to make the call, whenever it starts."""

    task_id: str
    workspace_id: str
    attempt: int
    node_id: str
    node_ip: str
    node_address: str
    deployment_id: str
    host_port: int
    param_url: str = "/"
    request_body: str = ""
    body_encoding: BodyEncoding = "utf-8"
    content_type: str = "application/json"
    timeout_s: float = 600.0
    gpu_type: str = ""
    gpu_count: int = 1
    retry_on_timeout: bool = False
    revision: int = 0
    """The workspace revision of the replica it runs on (0: not recorded)."""
    proxy_cert_sha256: str = ""
    stream: bool = False
    """Copied from `TaskSubmitted.stream`: hand the response's chunks out as they arrive."""


@dataclass(frozen=True, slots=True)
class TaskCompleted(TaskEvent):
    """The container answered. Terminal: the first terminal event of a task wins.
    `started_at`..`finished_at` is the container's processing time (GPU time is that
    span times `gpu_count`)."""

    task_id: str
    workspace_id: str
    attempt: int
    node_id: str
    node_ip: str
    node_address: str
    status_code: int
    response_body: str
    started_at: datetime
    finished_at: datetime
    gpu_type: str
    gpu_count: int
    body_encoding: BodyEncoding = "utf-8"
    content_type: str = "application/json"
    revision: int = 0
    """The workspace revision of the replica that answered (its `TaskDispatched`'s)."""


@dataclass(frozen=True, slots=True)
class TaskFailed(TaskEvent):
    """An attempt failed. `retryable` is set by whoever emits it, only when another
    attempt is allowed: the scheduler then emits `TaskRetried` and places the task again.
    A failure that is not retryable is terminal. `code` is a stable machine-readable
    class (e.g. `node_error`, `timeout`)."""

    task_id: str
    workspace_id: str
    attempt: int
    node_id: str
    code: str
    reason: str
    retryable: bool
    status_code: int = 0
    response_body: str = ""


@dataclass(frozen=True, slots=True)
class TaskRetried(TaskEvent):
    """The task goes back to the queue for attempt `attempt`, never on `excluded_node_ids`."""

    task_id: str
    workspace_id: str
    attempt: int
    excluded_node_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class TaskCancelRequested(TaskEvent):
    """The caller asked to cancel the task (`/user/cancelTask`). Not terminal: whoever
    holds the task turns it into its `TaskCancelled` — the scheduler while it is not in
    flight (queued, or between attempts), the dispatcher while an attempt's call runs
    (it aborts the call). So each phase of a task has one emitter of its end, and an
    outcome decided before the request is read wins, in the log and by the clock."""

    task_id: str
    workspace_id: str
    reason: str = "cancelled by the caller"


@dataclass(frozen=True, slots=True)
class TaskCancelled(TaskEvent):
    """The task was cancelled before it completed. Terminal."""

    task_id: str
    workspace_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class IdempotencyChecked(TaskEvent):
    """The scheduler's verdict on a keyed submission: the first of its key within the
    window (`original_task_id == task_id`: the task is queued from now on), or a repeat of
    `original_task_id`, which ends at once (the scheduler's `TaskCancelled` follows it in
    the log). `original_digest` is the first submission's `request_digest`, so an ingress
    folding this verdict can answer later repeats of the key itself. Not terminal."""

    task_id: str
    workspace_id: str
    idempotency_key: str
    original_task_id: str
    original_digest: str

    @property
    def repeat(self) -> bool:
        """Whether the task repeats an earlier one (and so ends without running)."""
        return self.original_task_id != self.task_id


@dataclass(frozen=True, slots=True)
class TaskExpired(TaskEvent):
    """The task waited `waited_s` seconds for capacity, past its TTL. Terminal."""

    task_id: str
    workspace_id: str
    waited_s: float
