"""Errors the HTTP layer maps to status codes (in one handler, `app.py`)."""

from __future__ import annotations

from collections.abc import Mapping

from events.errors import NgpuError


class ApiError(NgpuError):
    """A request that cannot be served. `status` is the HTTP status, `field` names the
    offending input when there is one, `headers` go out with the answer (the taskID of a
    sync call that timed out, say)."""

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, field: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Unprocessable(ApiError):
    status, code = 422, "invalid"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


class AssetMissing(ApiError):
    """The BTC address does not hold the required BRC-20 balance."""

    status, code = 403, "brc20_asset_missing"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class QueueFull(ApiError):
    """A submission whose body would take the queued bytes over a cap
    (`NGPU_QUEUE_MAX_BYTES`, `NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE`)."""

    status, code = 429, "queue_full"


class GatewayTimeout(ApiError):
    status, code = 504, "timeout"
