"""The JSON answers of the HTTP API as pydantic models, for OpenAPI only: routes name them
in `responses` (with `response_model=None`, or answer a `JsonResponse` themselves), so
nothing is validated, filtered or converted at run time. Each model says what the code
that builds the body produces (`workspace_body`, `node_body`, `outcome`...); the schemathesis
run and `tests/services/ingress/test_answers.py` check real answers against them.

A field that an answer may leave out is `Absent` (never null); one that is always there
but may be null is typed `... | None` with no default."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from services.ingress.results import RESULT_CODES

Absent = SkipJsonSchema[None]
"""With a `_may_lack` default: the field is left out, not null."""


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def _may_lack(description: str) -> Any:
    """A field the answer leaves out when it does not apply (documented without null)."""
    return Field(None, description=description, json_schema_extra=_no_default)


class Answer(BaseModel):
    """An answer's documented shape; never instantiated. No other field is sent."""

    model_config = ConfigDict(extra="forbid")


# --- Errors ---------------------------------------------------------------------------


class ErrorDetail(Answer):
    code: str = Field(
        description="The class of error: `bad_request`, `invalid`, `malformed_json`, "
        "`unauthorized`, `not_found`, `method_not_allowed`, `conflict`, `rate_limited`, "
        "`body_too_large`, `unavailable`, `starting`, `timeout`..."
    )
    message: str = Field(description="What went wrong, for a person.")
    field: str | None = Field(description="The input at fault (`name`, `gpu.count`, "
                              "`Authorization`...), null when none is.")  # fmt: skip


class ErrorAnswer(Answer):
    """The error answer of the management and node API (`/v1/*`)."""

    error: ErrorDetail


class ContractError(Answer):
    """An NGPU API answer that is not a success (`/user/*`, `/brc20/*`)."""

    result_code: int = Field(description="The HTTP status of the answer (see the result codes).")
    msg: str = Field(description="Why, for a person (after the input at fault and a colon, "
                     "when one is).")  # fmt: skip
    taskID: str | Absent = _may_lack(
        "The task's ID, on the answers about an existing task (its failure, cancellation "
        "or expiry)."
    )
    data: str | Absent = _may_lack(
        "With a task's failure: the container's response body (base64 when it is not "
        "UTF-8), or empty."
    )


MANAGEMENT_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorAnswer,
          "description": "The bearer token is missing, malformed, or not valid for this route."},
    "4XX": {"model": ErrorAnswer,
            "description": "The request cannot be served: `error.code` says why, `error.field` "
            "names the input at fault (422 `invalid`: a field fails validation)."},
    "5XX": {"model": ErrorAnswer,
            "description": "A dependency is unavailable (`unavailable`), or the gateway is still "
            "catching up with the log (`starting`, with `Retry-After`)."},
}  # fmt: skip
"""The error answers of every management and node route (each takes a bearer token)."""


def contract_errors(*, bearer: bool = True) -> dict[int | str, dict[str, Any]]:
    """The error answers of an NGPU API route (with the workspace bearer's 401 unless
    `bearer` is false)."""
    unauthorized = {"model": ContractError, "description": RESULT_CODES[401]}
    errors: dict[int | str, dict[str, Any]] = {401: unauthorized} if bearer else {}
    errors |= {
        "4XX": {"model": ContractError,
                "description": "A bad request, an unknown task, a cancelled one, a missing "
                "BRC-20 balance, a rate limit...: `result_code` is the HTTP status."},
        "5XX": {"model": ContractError,
                "description": "The node or the container failed (502), no capacity or a "
                "dependency unavailable (503), a timeout (504): `result_code` is the HTTP "
                "status."},
    }  # fmt: skip
    return errors


# --- NGPU API ---------------------------------------------------------------------------

_TASK_ID = "The task's ID (`YYYYMMDD_HH_MM_SS_` and a number)."


class InProgress(Answer):
    """HTTP 202: the task is accepted or still under way."""

    result_code: Literal[100]
    msg: str
    taskID: str = Field(description=_TASK_ID)


class SyncAnswer(Answer):
    """A sync call's success: the container answered below HTTP 400."""

    result_code: Literal[200]
    msg: Literal["success"]
    data: str = Field(description="The container's response body (base64 when it is not "
                      "UTF-8).")  # fmt: skip


class TaskOutcome(Answer):
    """queryTask of a task done."""

    result_code: Literal[200]
    msg: Literal["success"]
    taskID: str = Field(description=_TASK_ID)
    data: str = Field(description="The container's response body (base64 when it is not "
                      "UTF-8).")  # fmt: skip


class TaskPending(Answer):
    """queryTask of a task queued or running (HTTP 202)."""

    result_code: Literal[100]
    msg: str = Field(description="`the task is queued` or `the task is running`.")
    taskID: str = Field(description=_TASK_ID)
    data: Literal[""] = Field(description="Empty until the task ends.")


class TaskIds(Answer):
    """queryTaskList: the workspace's task IDs in submission order."""

    result_code: Literal[200]
    msg: Literal["success"]
    result_size: int = Field(ge=0, description="How many IDs `taskIds` holds.")
    taskIds: list[str]
    cursor: str | Absent = _may_lack(
        "With `limit`, on a full page: the last ID, to pass back for the next page."
    )


class TaskInfo(Answer):
    """The contract's `taskInfo`: its keys (misspellings included) and types."""

    id: int = Field(description="A sequence number of the task.")
    userkey: str = Field(description="The workspace's user key.")
    btcaddress: str = Field(description="The request's `btc_address`, or empty.")
    workspaceid: str
    taskid: str
    requrl: str = Field(description="The path and query the task was submitted with.")
    method: str = Field(description="`schedulingTask`, or the sync call's path.")
    userip: str
    nodeip: str = Field(description="The IP of the node that ran it (else of its latest "
                        "dispatch), empty before any.")  # fmt: skip
    nodeaddr: str = Field(description="That node's 0x address, or empty.")
    requesttime: str = Field(description="`YYYY-MM-DD HH:MM:SS`, UTC.")
    responsetime: str = Field(description="`YYYY-MM-DD HH:MM:SS`, UTC; empty until it ends.")
    request: str = Field(description="The request's `data` as sent to the container (its "
                         "JSON text, or the string itself).")  # fmt: skip
    state: Literal[0, 1, 3, 4, 5, 6] = Field(
        description="0 queued, 1 running, 3 completed, 4 failed, 5 cancelled, 6 expired."
    )
    response: str = Field(description="The container's response body, empty until it ends.")
    recordDursion: int = Field(ge=0, description="Seconds from request to response.")
    videodursion: Literal[0]
    gpudursion: int = Field(ge=0, description="Seconds the container spent on it.")
    watermarktime: Literal[""]
    watermarkres: Literal[""]


class DetailedTask(Answer):
    """getDetailed: one task of the workspace."""

    result_code: Literal[200]
    msg: Literal["success"]
    taskInfo: TaskInfo


class Cancelled(Answer):
    """cancelTask: the task was cancelled."""

    result_code: Literal[200]
    msg: str
    taskID: str = Field(description=_TASK_ID)


class CancelConflict(Answer):
    """cancelTask of a task that had already ended otherwise."""

    result_code: Literal[409]
    msg: str
    taskID: str = Field(description=_TASK_ID)
    state: Literal[3, 4, 5, 6] = Field(
        description="As getDetailed's: 3 completed, 4 failed, 5 cancelled, 6 expired."
    )


class Brc20Check(Answer):
    """checkAddress: the address's BRC-20 holdings."""

    exists: bool = Field(description="Whether it holds the gateway's ticker with at least "
                         "its minimum balance.")  # fmt: skip
    names: list[str] = Field(description="Tickers held, sorted.")
    balances: list[int] = Field(description="The balance of each of `names`, in its order.")


# --- Workspaces ---------------------------------------------------------------------------


class WorkspaceGpu(Answer):
    type: str = Field(description="The normalized GPU type, e.g. `RTX4090`.")
    count: int = Field(description="GPUs per replica.")


class ReplicaCounts(Answer):
    min: int
    max: int
    wanted: int = Field(description="The scheduler's last decision (else `min`), within "
                        "min and max.")  # fmt: skip
    ready: int
    starting: int = Field(description="Requested or starting.")
    draining: int
    unplaced: str | Absent = _may_lack(
        "Why the replicas wanted beyond those placed are not placed (only then)."
    )


class ScalingDecision(Answer):
    replicas: int
    reason: str
    at: datetime


class ScalingPolicy(Answer):
    metric: Literal["queue_delay", "in_flight"]
    target: float = Field(description="queue_delay: seconds; in_flight: tasks per replica.")
    scale_up_after_s: float
    scale_down_after_s: float
    last: ScalingDecision | None = Field(description="The scheduler's last decision, null "
                                         "before its first.")  # fmt: skip


class RolloutFailure(Answer):
    revision: int = Field(description="The revision that failed to start.")
    state: Literal["rolled_back"]
    reason: str
    at: datetime


class RegistryAuthSummary(Answer):
    """Never the password. Both null with `sealed`: the gateway cannot open them (no
    `NGPU_SECRETS_KEY`, or another key)."""

    server: str | None
    username: str | None
    sealed: Literal[True] | Absent = _may_lack("There when they cannot be opened.")


class Workspace(Answer):
    """A workspace as the management API answers it (its Workspace ID included)."""

    workspace_id: str = Field(description="The Workspace ID: the NGPU API's bearer token.")
    userkey: str
    name: str
    image: str
    command: list[str] = Field(description="The argv its replicas run.")
    env: dict[str, str]
    gpu: WorkspaceGpu
    ports: list[int]
    health_path: str
    replicas: ReplicaCounts
    timeout_s: float
    retry_on_timeout: bool
    max_priority: int
    concurrency: int
    created_at: datetime
    revision: int = Field(description="The revision its replicas run.")
    scaling: ScalingPolicy
    rollout: RolloutFailure | None = Field(description="The last failed rollout, until the "
                                           "next revision.")  # fmt: skip
    registry_auth: RegistryAuthSummary | None = Field(description="Null: none set.")


_WEBHOOK_SECRET = Field(
    pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$",
    description="The workspace's webhook signing secret (Standard Webhooks: `whsec_` and "
    "base64), answered this once; POST /v1/workspaces/{id}/webhook-secret makes a new one.",
)


class CreatedWorkspace(Workspace):
    """The workspace just registered, with its webhook secret."""

    webhook_secret: str = _WEBHOOK_SECRET


class WebhookSecret(Answer):
    workspace_id: str
    webhook_secret: str = _WEBHOOK_SECRET


class WorkspacePage(Answer):
    workspaces: list[Workspace] = Field(description="In the order of (name, workspace_id).")
    cursor: str | Absent = _may_lack("There when more follow: pass it back for the next page.")


class ReplicaLog(Answer):
    deployment_id: str
    node_id: str
    state: Literal["requested", "starting", "ready", "draining", "failed"]
    lines: list[str] = Field(description="Its last lines (each at most 8192 characters).")
    error: str | None = Field(description="Why its node could not be read, else null.")


class WorkspaceLogs(Answer):
    replicas: list[ReplicaLog] = Field(description="The replicas not stopped, by node then id.")


# --- Nodes ---------------------------------------------------------------------------------


class NodeRegistration(Answer):
    node_id: str
    token: str = Field(description="The node's own bearer token, shown this once.")
    heartbeat_interval_s: float
    lost_after_s: float = Field(description="A node silent this long is lost.")


class HeartbeatAnswer(Answer):
    assignments_etag: str = Field(description="Changes exactly when the node's assignments do.")


class NodeAssignment(Answer):
    """A deployment as the node may see it: never the workspace."""

    deployment_id: str
    node_id: str
    image: str
    command: list[str]
    ports: list[int]
    gpu_type: str
    gpu_count: int
    health_path: str
    env: dict[str, str]
    secret: str = Field(description="The key the gateway signs each call to it with.")
    registry_auth: bool = Field(description="Whether the image is pulled with registry "
                                "credentials (fetched from `.../registry-auth`).")  # fmt: skip


class Assignments(Answer):
    etag: str
    deployments: list[NodeAssignment] = Field(description="Not stopped, by deployment id.")


class RegistryCredentials(Answer):
    server: str
    username: str
    password: str


class NodeGpu(Answer):
    type: str
    memory_mb: int


class NodeDeployment(Answer):
    deployment_id: str
    workspace_id: str
    revision: int
    state: Literal["requested", "starting", "ready", "draining", "failed", "stopped"]
    ports: dict[str, int] = Field(description="Host port of each container port, once ready.")
    reason: str = Field(description="Why it failed, drains or stopped, else empty.")


class Node(Answer):
    node_id: str
    address: str
    host: str
    region: str
    runtime: Literal["process", "docker"]
    proxy_cert: str = Field(description="The PEM certificate its proxies serve, or empty.")
    proxy_cert_sha256: str
    gpus: list[NodeGpu]
    healthy: bool = Field(description="Heard from within the window, not lost, not draining.")
    draining: bool
    lost: bool
    revoked: bool
    in_flight: int = Field(description="Its tasks under way, as this ingress has seen them.")
    last_heartbeat: datetime
    deployments: list[NodeDeployment]


class NodeList(Answer):
    nodes: list[Node] = Field(description="By node id.")


# --- Analytics and task history --------------------------------------------------------------


class UsageRow(Answer):
    key: str
    tasks: int = Field(description="Completed tasks.")
    gpu_seconds: float


class Usage(Answer):
    group_by: Literal["workspace", "node", "gpu_type", "day", "revision"]
    from_: datetime = Field(alias="from", description="The start (inclusive).")
    to: datetime = Field(description="The end (exclusive).")
    rows: list[UsageRow] = Field(description="By key.")


class TaskEvent(Answer):
    """One event of a task's history: its type, time, and the fields of its kind."""

    type: str = Field(description="`TaskSubmitted`, `TaskDispatched`, `TaskCompleted`, "
                      "`TaskFailed`, `WebhookDelivered`...")  # fmt: skip
    at: datetime
    mode: Literal["sync", "async"] | Absent = _may_lack("TaskSubmitted.")
    method: str | Absent = _may_lack("TaskSubmitted.")
    attempt: int | Absent = _may_lack("Dispatches, outcomes, retries, webhook attempts.")
    attempts: int | Absent = _may_lack("WebhookDelivered, WebhookAbandoned.")
    node_id: str | Absent = _may_lack("TaskDispatched, TaskCompleted, TaskFailed.")
    revision: int | Absent = _may_lack("TaskDispatched: the workspace revision it ran.")
    status_code: int | Absent = _may_lack(
        "The container's (TaskCompleted, TaskFailed when it answered) or the webhook "
        "receiver's HTTP status."
    )
    code: str | Absent = _may_lack("TaskFailed: `node_error`, `timeout`...")
    reason: str | Absent = _may_lack("Failures, retries, cancels, an abandoned webhook.")
    retryable: bool | Absent = _may_lack("TaskFailed.")
    waited_s: float | Absent = _may_lack("TaskExpired.")
    original_task_id: str | Absent = _may_lack("IdempotencyChecked.")
    kind: Literal["start", "completed"] | Absent = _may_lack("Webhook events.")
    latency_ms: float | Absent = _may_lack("WebhookAttempted.")
    error: str | Absent = _may_lack("WebhookAttempted, when the receiver did not answer 2xx.")
    retry_in_s: float | Absent = _may_lack("WebhookAttempted: the delay before the next, or 0.")


class TaskHistory(Answer):
    taskID: str
    workspace_id: str
    state: Literal["queued", "running", "completed", "failed", "cancelled", "expired"]
    priority: int
    timeout_s: float
    ttl_s: float
    webhook: str | None = Field(description="The URL its events are posted to, or null.")
    events: list[TaskEvent] = Field(description="In time order.")


# --- Event streams ---------------------------------------------------------------------------


class StreamState(Answer):
    """`event: state`: the task is queued or running (at the start, and at each change)."""

    taskID: str
    state: Literal["queued", "running"]


class StreamOutput(Answer):
    """`event: output` (`id`: its `seq`): a chunk of the container's response."""

    taskID: str
    attempt: int
    seq: int = Field(ge=0, description="Its place in the attempt's output, from 0.")
    data: str = Field(description="The chunk, base64 (chunks split text anywhere).")
    content_type: str | Absent = _may_lack("On `seq` 0: the container's Content-Type.")


class StreamEnd(Answer):
    """`event: end`: the task's queryTask answer; the stream closes after it."""

    result_code: int = Field(description="200 done, else the failure's result code.")
    msg: str
    taskID: str
    data: str = Field(description="The container's response body (base64 when it is not "
                      "UTF-8), or empty.")  # fmt: skip


SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"},
                   "id": {"type": "string"}, "retry": {"type": "integer", "minimum": 0}},
}  # fmt: skip
"""One server-sent event, any: how OpenAPI 3.1 describes a `text/event-stream` answer
(its `schema` is each event's)."""


def task_stream_event() -> dict[str, Any]:
    """One event of `/user/streamTask`: its `event` and, by it, its `data`'s JSON."""
    kinds: dict[str, type[Answer]] = {"state": StreamState, "output": StreamOutput,
                                      "end": StreamEnd}  # fmt: skip
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": list(kinds)},
            "data": {"type": "string", "description": "One line of JSON."},
            "id": {"type": "string", "description": "On `output`: its `seq`."},
        },
        "oneOf": [
            {"properties": {"event": {"const": kind}, "data": {
                "contentMediaType": "application/json",
                "contentSchema": model.model_json_schema(mode="serialization")}}}
            for kind, model in kinds.items()
        ],
    }  # fmt: skip


# --- Everyone's own usage --------------------------------------------------------------


class WorkspaceUsage(Answer):
    """`GET /user/usage`: the workspace's completed tasks (their first ending is a
    completion) whose response time is in [startTime, endTime)."""

    result_code: int = Field(description="200")
    msg: str
    group_by: Literal["day", "gpu_type"]
    startTime: str = Field(description="The window's start (ISO 8601, UTC; inclusive).")
    endTime: str = Field(description="The window's end (ISO 8601, UTC; exclusive).")
    tasks: int = Field(description="Completed tasks in the window.")
    gpu_seconds: float = Field(description="Their GPU time: (finish - start) x GPUs.")
    rows: list[UsageRow] = Field(description="By day or GPU type.")


class NodeUsageEntry(Answer):
    """What the node served on one UTC day for one revision of one workspace."""

    day: str = Field(description="YYYY-MM-DD (UTC) of the response time.")
    workspace: str = Field(description="The workspace's name (empty once it is deleted).")
    workspace_hash: str = Field(
        description="The first 12 hex digits of the SHA-256 of the workspace's ID: stable, "
        "and never the ID itself (the customer's credential)."
    )
    revision: int = Field(description="The workspace revision that answered (0: unknown).")
    tasks: int
    gpu_seconds: float


class NodeUsage(Answer):
    """`GET /v1/nodes/{node_id}/usage`: the completed tasks the node ran whose response
    time is in [from, to), by day, workspace and revision."""

    node_id: str
    from_: str = Field(alias="from", description="ISO 8601, UTC; inclusive.")
    to: str = Field(description="ISO 8601, UTC; exclusive.")
    tasks: int
    gpu_seconds: float
    rows: list[NodeUsageEntry]
