"""Exceptions of the SDK: one class per `result_code` (the NGPU API's) or HTTP status (the
management API's), all under `NgpuError`, which carries `result_code`, `msg`, `task_id`
(when the answer named one), `field` (the input the management API named), `data` (a
failed task's body, e.g. the container's error answer) and the whole decoded `body`."""

from __future__ import annotations

from typing import Any


class NgpuError(Exception):
    """An answer of the gateway that is not a success: `result_code` is the contract's
    code, else the HTTP status."""

    result_code = 0

    def __init__(
        self,
        msg: str,
        *,
        result_code: int | None = None,
        task_id: str | None = None,
        field: str | None = None,
        data: Any = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{result_code or self.result_code}: {msg}")
        if result_code is not None:
            self.result_code = result_code
        self.msg = msg
        self.task_id = task_id
        self.field = field
        self.data = data
        self.body = body or {}


class BadRequest(NgpuError):
    """400: malformed input (`msg` names the parameter)."""

    result_code = 400


class Unauthorized(NgpuError):
    """401: a missing or unknown bearer (Workspace ID, or admin token)."""

    result_code = 401


class Forbidden(NgpuError):
    """403: the BTC address does not hold the required BRC-20 balance."""

    result_code = 403


class NotFound(NgpuError):
    """404: unknown task (or another workspace's), workspace or node."""

    result_code = 404


class Conflict(NgpuError):
    """409: `cancel` of a task that had ended (`state` holds its taskInfo state), or a
    workspace name already taken."""

    result_code = 409

    @property
    def state(self) -> int | None:
        value = self.body.get("state")
        return value if isinstance(value, int) else None


class Cancelled(NgpuError):
    """410: the task was cancelled (`cancel`, or its workspace was deleted)."""

    result_code = 410


class PayloadTooLarge(NgpuError):
    """413: the request body is over the gateway's limit."""

    result_code = 413


class Unprocessable(NgpuError):
    """422: an Idempotency-Key already used for another request (`msg` names the first
    task), or a management field missing or out of range (`field`)."""

    result_code = 422


class RateLimited(NgpuError):
    """429: rate limited, or the queue is full; retry later."""

    result_code = 429


class NodeError(NgpuError):
    """502: the nodes failed every attempt, or the container answered an HTTP error
    (its body in `data`)."""

    result_code = 502


class Unavailable(NgpuError):
    """503: no capacity before the task's TTL, or a dependency is unavailable, or the
    gateway is starting."""

    result_code = 503


class GatewayTimeout(NgpuError):
    """504: the container did not answer within its timeout, or a sync call outlived the
    gateway's wait (poll `task_id`)."""

    result_code = 504


class WaitTimeout(NgpuError, TimeoutError):
    """`wait()` gave up before the task ended (`result_code` 100: it goes on)."""

    result_code = 100


class WebhookSignatureError(NgpuError):
    """`verify_webhook`: a missing or wrong signature, or a timestamp more than five
    minutes off."""

    result_code = 0


class MissingBearer(ValueError):
    """A call made without the bearer it needs (the client's `workspace_id` for the NGPU
    API, `admin_token` for the management API); nothing was sent."""


ERRORS: dict[int, type[NgpuError]] = {
    cls.result_code: cls
    for cls in (
        BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Cancelled, PayloadTooLarge,
        Unprocessable, RateLimited, NodeError, Unavailable, GatewayTimeout,
    )
}  # fmt: skip
"""The class of each code; any other code raises `NgpuError` itself."""


def error_for(code: int, msg: str, **details: Any) -> NgpuError:
    """The exception for `code` (a contract `result_code` or an HTTP status)."""
    cls = ERRORS.get(code, NgpuError)
    return cls(msg, result_code=code, **details)
