"""Typed answers of the gateway: frozen dataclasses built from its JSON by `from_json`.
Fields the gateway adds later are kept in `raw`, never dropped silently."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PENDING = 100
DONE = 200


def decode_data(text: Any) -> Any:
    """A task's `data` as the caller wants it: the parsed JSON when the text is JSON, else
    the text itself (a response that was not UTF-8 arrives base64, as text)."""
    if not isinstance(text, str) or not text:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """`queryTask`'s answer, a sync call's success, or a `Prefer: wait` 202: `result_code`
    100 (queued or running: `state` says which when the gateway's `msg` does) or 200 (done;
    `data` decoded, `text` as answered)."""

    result_code: int
    msg: str
    task_id: str
    text: str = ""
    data: Any = None

    @property
    def done(self) -> bool:
        return self.result_code == DONE

    @property
    def state(self) -> str:
        """`queued`, `running` or `pending` (100 with another `msg`), else `completed`."""
        if self.result_code == DONE:
            return "completed"
        for state in ("queued", "running"):
            if state in self.msg:
                return state
        return "pending"

    @classmethod
    def from_json(cls, body: dict[str, Any], task_id: str = "") -> TaskStatus:
        text = body.get("data") if isinstance(body.get("data"), str) else ""
        return cls(
            result_code=int(body.get("result_code", 0)), msg=str(body.get("msg", "")),
            task_id=str(body.get("taskID") or task_id), text=text or "",
            data=decode_data(body.get("data")),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Submitted:
    """`schedulingTask`'s answer: the task is queued (or, with an Idempotency-Key already
    used for the same request, the first task's id)."""

    task_id: str
    msg: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Submitted:
        return cls(task_id=str(body["taskID"]), msg=str(body.get("msg", "")))


@dataclass(frozen=True, slots=True)
class Cancel:
    """`cancelTask`'s answer: `cancelled` (200), or the cancel is under way (100)."""

    result_code: int
    msg: str
    task_id: str

    @property
    def cancelled(self) -> bool:
        return self.result_code == DONE

    @classmethod
    def from_json(cls, body: dict[str, Any], task_id: str) -> Cancel:
        return cls(int(body["result_code"]), str(body.get("msg", "")),
                   str(body.get("taskID") or task_id))  # fmt: skip


@dataclass(frozen=True, slots=True)
class TaskPage:
    """A page of `queryTaskList`: task ids in submission order; `cursor` when a full page
    may be followed by more."""

    task_ids: tuple[str, ...]
    result_size: int
    cursor: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TaskPage:
        ids = tuple(str(t) for t in body.get("taskIds", ()))
        cursor = body.get("cursor")
        return cls(ids, int(body.get("result_size", len(ids))), str(cursor) if cursor else None)


TASK_STATES = {0: "queued", 1: "running", 3: "completed", 4: "failed", 5: "cancelled",
               6: "expired"}  # fmt: skip
"""`TaskInfo.state` codes."""


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """`getDetailed`'s `taskInfo`: the contract's 20 fields (its spellings in `raw`)."""

    id: int
    userkey: str
    btcaddress: str
    workspaceid: str
    taskid: str
    requrl: str
    method: str
    userip: str
    nodeip: str
    nodeaddr: str
    requesttime: str
    responsetime: str
    request: str
    state: int
    response: str
    record_duration: int
    video_duration: int
    gpu_duration: int
    watermarktime: str
    watermarkres: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def state_name(self) -> str:
        return TASK_STATES.get(self.state, str(self.state))

    @property
    def response_data(self) -> Any:
        return decode_data(self.response)

    @classmethod
    def from_json(cls, info: dict[str, Any]) -> TaskInfo:
        def text(name: str) -> str:
            return str(info.get(name, ""))

        def number(name: str) -> int:
            return int(info.get(name) or 0)

        return cls(
            id=number("id"), userkey=text("userkey"), btcaddress=text("btcaddress"),
            workspaceid=text("workspaceid"), taskid=text("taskid"), requrl=text("requrl"),
            method=text("method"), userip=text("userip"), nodeip=text("nodeip"),
            nodeaddr=text("nodeaddr"), requesttime=text("requesttime"),
            responsetime=text("responsetime"), request=text("request"), state=number("state"),
            response=text("response"), record_duration=number("recordDursion"),
            video_duration=number("videodursion"), gpu_duration=number("gpudursion"),
            watermarktime=text("watermarktime"), watermarkres=text("watermarkres"), raw=info,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One event of a task's history: its `type`, `at` (ISO 8601) and the fields of its
    kind (`attempt`, `node_id`, `status_code`, ...)."""

    type: str
    at: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskHistory:
    """`GET /v1/tasks/{taskID}`: the task's state, options and events in time order."""

    task_id: str
    workspace_id: str
    state: str
    priority: int
    timeout_s: float
    ttl_s: float
    webhook: str | None
    events: tuple[TaskEvent, ...]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TaskHistory:
        events = tuple(
            TaskEvent(str(e["type"]), str(e["at"]),
                      {k: v for k, v in e.items() if k not in ("type", "at")})
            for e in body.get("events", ())
        )  # fmt: skip
        return cls(
            task_id=str(body["taskID"]), workspace_id=str(body["workspace_id"]),
            state=str(body["state"]), priority=int(body.get("priority", 0)),
            timeout_s=float(body.get("timeout_s", 0)), ttl_s=float(body.get("ttl_s", 0)),
            webhook=body.get("webhook"), events=events,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Workspace:
    """A workspace as the management API answers it; `webhook_secret` only in the answer
    of its creation (it is answered once). Every field is in `raw`."""

    workspace_id: str
    name: str
    userkey: str
    image: str
    command: tuple[str, ...]
    gpu_type: str
    gpu_count: int
    ports: tuple[int, ...]
    replicas: dict[str, Any]
    timeout_s: float
    revision: int
    created_at: str
    webhook_secret: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Workspace:
        gpu = body.get("gpu") or {}
        return cls(
            workspace_id=str(body["workspace_id"]), name=str(body["name"]),
            userkey=str(body.get("userkey", "")), image=str(body.get("image", "")),
            command=tuple(body.get("command", ())), gpu_type=str(gpu.get("type", "")),
            gpu_count=int(gpu.get("count", 0)), ports=tuple(body.get("ports", ())),
            replicas=dict(body.get("replicas") or {}), timeout_s=float(body.get("timeout_s", 0)),
            revision=int(body.get("revision") or 1), created_at=str(body.get("created_at", "")),
            webhook_secret=body.get("webhook_secret"), raw=body,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReplicaLog:
    """One replica's last lines (`GET /v1/workspaces/{id}/logs`); `error` says why its
    node could not be read."""

    deployment_id: str
    node_id: str
    state: str
    lines: tuple[str, ...]
    error: str | None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ReplicaLog:
        return cls(str(body["deployment_id"]), str(body["node_id"]), str(body.get("state", "")),
                   tuple(body.get("lines", ())), body.get("error"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Deployment:
    """A replica on a node."""

    deployment_id: str
    workspace_id: str
    revision: int
    state: str
    ports: dict[str, int]
    reason: str


@dataclass(frozen=True, slots=True)
class Node:
    """A node as `GET /v1/nodes` lists it."""

    node_id: str
    address: str
    host: str
    region: str
    gpus: tuple[dict[str, Any], ...]
    healthy: bool
    draining: bool
    lost: bool
    revoked: bool
    in_flight: int
    deployments: tuple[Deployment, ...]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Node:
        deployments = tuple(
            Deployment(str(d.get("deployment_id", "")), str(d.get("workspace_id", "")),
                       int(d.get("revision") or 1), str(d.get("state", "")),
                       dict(d.get("ports") or {}), str(d.get("reason", "")))
            for d in body.get("deployments", ())
        )  # fmt: skip
        return cls(
            node_id=str(body["node_id"]), address=str(body.get("address", "")),
            host=str(body.get("host", "")), region=str(body.get("region", "")),
            gpus=tuple(body.get("gpus", ())), healthy=bool(body.get("healthy")),
            draining=bool(body.get("draining")), lost=bool(body.get("lost")),
            revoked=bool(body.get("revoked")), in_flight=int(body.get("in_flight", 0)),
            deployments=deployments, raw=body,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Completed tasks and GPU seconds of one key (`GET /v1/analytics/usage`)."""

    key: str
    tasks: int
    gpu_seconds: float

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> UsageRow:
        return cls(str(body["key"]), int(body["tasks"]), float(body["gpu_seconds"]))


@dataclass(frozen=True, slots=True)
class Progress:
    """What `wait()`'s `on_progress` is called with after each poll."""

    task_id: str
    state: str
    elapsed_s: float
    polls: int
