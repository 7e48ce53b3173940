"""One attempt to deliver one webhook message: a signed POST, its outcome as a value.

Signed as the Standard Webhooks specification says, by its reference library
(`standardwebhooks`): `webhook-id` (the message's id, the same on every attempt),
`webhook-timestamp` (unix seconds of this attempt) and `webhook-signature` (`v1,` and the
base64 HMAC-SHA256 of `id.timestamp.body` under the workspace's secret). Redirects are not
followed (a 3xx is a failed attempt), the whole attempt is bounded by `TIMEOUT_S`, and at
most `_READ_BYTES` of the answer are read (and dropped: only its status counts)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from standardwebhooks import Webhook

from services.hosts import HostPolicy
from services.webhooks.targets import (
    CheckedResolver,
    TargetError,
    TargetRefused,
    parse,
    refusal,
)

TIMEOUT_S = 10.0
USER_AGENT = "ngpu-webhooks/1"
_READ_BYTES = 64 * 1024
_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Outcome:
    """`status_code` 0: no HTTP answer. `error` is empty when the receiver answered 2xx;
    `refused`: the target may not be called (a URL or address the policy refuses), so no
    later attempt would fare better."""

    status_code: int
    latency_ms: float
    error: str = ""
    refused: bool = False

    @property
    def delivered(self) -> bool:
        return not self.error


def signed_headers(secret: str, message_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The headers of one attempt made at `at`."""
    moment = datetime.fromtimestamp(int(at.timestamp()), UTC)
    signature = Webhook(secret).sign(message_id, moment, body.decode("utf-8"))
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


def session(policy: HostPolicy, *, limit_per_host: int = 64) -> aiohttp.ClientSession:
    """A session whose connections go only to addresses `policy` allows (names are
    checked by the resolver that makes the connection; see `services.webhooks.targets`)."""
    connector = aiohttp.TCPConnector(
        resolver=CheckedResolver(policy), limit=0, limit_per_host=limit_per_host
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False)


async def attempt(
    http: aiohttp.ClientSession,
    policy: HostPolicy,
    url: str,
    message_id: str,
    body: bytes,
    secret: str,
    *,
    timeout_s: float = TIMEOUT_S,
) -> Outcome:
    """POST `body` to `url`, signed with `secret`; never raises for anything the target or
    the network does."""
    started = time.monotonic()

    def took() -> float:
        return round((time.monotonic() - started) * 1000, 3)

    try:
        target = parse(url)
    except TargetError as exc:
        return Outcome(0, took(), f"the webhook URL is refused: {exc}", refused=True)
    if target.literal_ip and (why := await refusal(target, policy)):
        return Outcome(0, took(), f"the webhook's address is refused: {why[0]}", refused=True)
    headers = signed_headers(secret, message_id, body, datetime.now(UTC))
    try:
        async with http.post(
            url, data=body, headers=headers, allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:  # fmt: skip
            await response.content.read(_READ_BYTES)
            status = response.status
    except aiohttp.ClientConnectorDNSError as exc:
        if isinstance(exc.os_error, TargetRefused):
            return Outcome(0, took(), f"the webhook's address is refused: {exc.os_error}",
                           refused=True)  # fmt: skip
        return Outcome(0, took(), _clip(f"{target.host} does not resolve: {exc.os_error}"))
    except TimeoutError:
        return Outcome(0, took(), f"no answer within {timeout_s:g}s")
    except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a URL aiohttp refuses
        return Outcome(0, took(), _clip(f"{type(exc).__name__}: {exc}"))
    if 200 <= status < 300:
        return Outcome(status, took())
    if 300 <= status < 400:
        return Outcome(status, took(), f"HTTP {status}: redirects are not followed")
    return Outcome(status, took(), f"HTTP {status}")


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"
