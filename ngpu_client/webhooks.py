"""Verifying the gateway's webhooks (Standard Webhooks signatures, the workspace's
`whsec_…` secret) with the `standardwebhooks` library."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ngpu_client.errors import WebhookSignatureError
from ngpu_client.models import TaskStatus


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    """A verified message: `type` (`task.start` or `task.completed`), `timestamp` (the
    event's, ISO 8601), `id` (the `webhook-id`: the same on every retry of a message)
    and the task's `queryTask` answer as of the event (`status.result_code` may be a
    failure's: it is not raised)."""

    id: str
    type: str
    timestamp: str
    status: TaskStatus
    raw: dict[str, Any]


def verify_webhook(payload: bytes | str, headers: Mapping[str, str], secret: str) -> WebhookMessage:
    """The message `payload` (the request body as received, not re-encoded) carries, once
    its `webhook-signature` is checked against `secret` and its `webhook-timestamp` is
    within five minutes; `WebhookSignatureError` otherwise."""
    plain = {k.lower(): v for k, v in headers.items()}
    try:
        message = Webhook(secret).verify(payload, plain)
    except (WebhookVerificationError, ValueError) as exc:
        raise WebhookSignatureError(f"the webhook's signature does not verify: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
        raise WebhookSignatureError("the webhook's body is not a task message")
    return WebhookMessage(
        id=plain.get("webhook-id", ""), type=str(message.get("type", "")),
        timestamp=str(message.get("timestamp", "")),
        status=TaskStatus.from_json(message["data"]), raw=message,
    )  # fmt: skip
