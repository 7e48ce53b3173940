"""The NGPU API's result codes: `result_code` equals the HTTP status of its class, except
100 (accepted or in progress), which travels as HTTP 202."""

from __future__ import annotations

from typing import Any

from fastapi import status

IN_PROGRESS = 100
DONE = 200

RESULT_CODES: dict[int, str] = {
    200: "done: `data` holds the container's response (cancelTask: the task was cancelled)",
    100: "accepted, queued or running (HTTP 202); a sync call past its `Prefer: wait=N`",
    400: "bad request: malformed JSON, a bad paramUrl, an undeclared paramPort, an invalid "
    "BTC address, a field of the wrong type, a timeout_s, ttl_s, priority or Prefer out of "
    "range",
    401: "unauthorized: missing or unknown `Authorization: Bearer <Workspace ID>`",
    403: "the BTC address does not hold the required BRC-20 balance",
    404: "unknown task (or a task of another workspace)",
    409: "cancelTask of a task that has already ended (its `state` is in the answer)",
    410: "the task was cancelled (cancelTask, or its workspace was deleted)",
    413: "body too large",
    422: "an Idempotency-Key already used for another request within 24 h",
    429: "rate limited, or the queue is full (NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE or "
    "NGPU_QUEUE_MAX_BYTES)",
    502: "node error: the node failed, or the container answered an HTTP error",
    503: "no capacity (the task waited past its TTL), or a dependency is unavailable",
    504: "timeout: the node did not answer in time, or a sync call waited too long",
}


def http_status(result_code: int) -> int:
    return status.HTTP_202_ACCEPTED if result_code == IN_PROGRESS else result_code


def contract_body(result_code: int, msg: str, **fields: Any) -> dict[str, Any]:
    return {"result_code": result_code, "msg": msg, **fields}
