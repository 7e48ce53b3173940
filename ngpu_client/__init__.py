"""Python SDK of the NGPU gateway: `Client` (sync) and `AsyncClient` (async) on httpx,
with typed answers (`ngpu_client.models`) and Standard Webhooks verification
(`verify_webhook`). Needs httpx and standardwebhooks only, not the server's packages.

    from ngpu_client import Client

    with Client("http://127.0.0.1:8000", workspace_id="...") as ngpu:
        answer = ngpu.run("img2img", {"prompt": "a cat"})       # sync: answer.data is decoded
        task = ngpu.submit("img2img", {"prompt": "a dog"}, priority=1)
        done = ngpu.wait(task.task_id, timeout=300, on_progress=print)

`data` comes back decoded: the parsed JSON when the container's answer is JSON, else the
text (`text` keeps it as answered). Every `result_code` that is not a success (100, 200)
raises its class, all under `NgpuError` (`result_code`, `msg`, `task_id`, `field`,
`data`, `body`); the management API's HTTP statuses map onto the same classes:

| code | exception | when |
|---|---|---|
| 400 | `BadRequest` | malformed input; `msg` names the parameter |
| 401 | `Unauthorized` | a missing or unknown Workspace ID (or admin token) |
| 403 | `Forbidden` | the BTC address lacks the required BRC-20 balance |
| 404 | `NotFound` | unknown task (or another workspace's), workspace or node |
| 409 | `Conflict` | `cancel` of an ended task (`.state`), or a workspace name taken |
| 410 | `Cancelled` | the task was cancelled |
| 413 | `PayloadTooLarge` | body over the gateway's limit |
| 422 | `Unprocessable` | Idempotency-Key reused for another request; a bad management field |
| 429 | `RateLimited` | rate limited, or the queue is full |
| 502 | `NodeError` | the nodes failed, or the container answered an error (`data`) |
| 503 | `Unavailable` | no capacity before the TTL, a dependency down, or starting |
| 504 | `GatewayTimeout` | the container or the sync call timed out (`task_id` to poll) |

`wait()` raises `WaitTimeout` (also a `TimeoutError`) when its own timeout passes,
`verify_webhook` `WebhookSignatureError`, and a call without the bearer it needs
`MissingBearer` (a `ValueError`; nothing is sent). A gateway that cannot be reached raises httpx's
`httpx.HTTPError`.
"""

from ngpu_client.aio import AsyncClient
from ngpu_client.client import Client
from ngpu_client.errors import (
    BadRequest,
    Cancelled,
    Conflict,
    Forbidden,
    GatewayTimeout,
    MissingBearer,
    NgpuError,
    NodeError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
    Unprocessable,
    WaitTimeout,
    WebhookSignatureError,
)
from ngpu_client.models import (
    Cancel,
    Node,
    Progress,
    ReplicaLog,
    Submitted,
    TaskHistory,
    TaskInfo,
    TaskPage,
    TaskStatus,
    UsageRow,
    Workspace,
)
from ngpu_client.webhooks import WebhookMessage, verify_webhook

__all__ = [
    "AsyncClient", "BadRequest", "Cancel", "Cancelled", "Client", "Conflict", "Forbidden",
    "GatewayTimeout", "MissingBearer", "NgpuError", "Node", "NodeError", "NotFound",
    "PayloadTooLarge", "Progress", "RateLimited", "ReplicaLog", "Submitted", "TaskHistory",
    "TaskInfo", "TaskPage", "TaskStatus", "Unauthorized", "Unavailable", "Unprocessable",
    "UsageRow", "WaitTimeout", "WebhookMessage", "WebhookSignatureError", "Workspace",
    "verify_webhook",
]  # fmt: skip
