"""`schedulingTask`'s webhook query parameters: `webhook` (where to post the task's
messages) and `webhook_events` (which: `start`, `completed`, comma-separated; default
`completed`). Checked before anything is published, a bad value answering 400 naming the
parameter: the URL's form (`services.webhooks.targets`), then its host, a DNS name by the
addresses it resolves to now (the `webhooks` role checks them again at each attempt)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast, get_args

from events import WebhookKind
from services.hosts import HostPolicy
from services.ingress.errors import BadRequest
from services.settings import Settings
from services.webhooks.targets import TargetError, parse, policy_from_settings, refusal

KINDS: tuple[WebhookKind, ...] = get_args(WebhookKind)
DEFAULT_EVENTS: tuple[WebhookKind, ...] = ("completed",)
RESOLVE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    url: str
    events: tuple[WebhookKind, ...]


@functools.lru_cache(maxsize=8)
def _policy(allow: tuple[str, ...]) -> HostPolicy:
    return policy_from_settings(allow)


def webhook_events(raw: str | None) -> tuple[WebhookKind, ...]:
    """The kinds named in `raw` (`start,completed`), each once, in the order named."""
    if raw is None or raw == "":
        return DEFAULT_EVENTS
    names = [name.strip() for name in raw.split(",")]
    unknown = [name for name in names if name not in KINDS]
    if unknown or len(raw) > 64:
        raise BadRequest(
            f"must be {', '.join(KINDS)} or both, comma-separated (got {raw[:64]!r})",
            field="webhook_events",
        )
    return tuple(dict.fromkeys(cast(WebhookKind, name) for name in names))


async def webhook_request(query: Mapping[str, str], settings: Settings) -> WebhookRequest | None:
    """The webhook a submission asks for, or None; `BadRequest` naming the parameter."""
    url = query.get("webhook")
    raw_events = query.get("webhook_events")
    if url is None or url == "":
        if raw_events:
            raise BadRequest("names the webhook's events: give webhook too",
                             field="webhook_events")  # fmt: skip
        return None
    events = webhook_events(raw_events)
    try:
        target = parse(url)
    except TargetError as exc:
        raise BadRequest(str(exc), field="webhook") from exc
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            refused = await refusal(target, _policy(tuple(settings.webhook_host_allow)))
    except TimeoutError as exc:
        raise BadRequest(f"{target.host} does not resolve in time", field="webhook") from exc
    if refused is not None:
        raise BadRequest(refused[0], field="webhook")
    return WebhookRequest(url, events)
