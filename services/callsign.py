"""Signed calls from the gateway to a node's deployment proxy.

Each deployment has a secret: HMAC-SHA256 of its deployment id under the control plane's
node call key (`NGPU_NODE_CALL_KEY`). The ingress hands it to the node with the
assignment; the dispatcher derives it again from the `deployment_id` of a dispatch, so the
secret is never written to the event log (which is archived forever). A node learns only
the secrets of its own deployments, never the key.

The dispatcher signs each call: `X-NGPU-Timestamp` (unix seconds), `X-NGPU-Nonce` (random,
one per call) and `X-NGPU-Signature`, the hex HMAC-SHA256 under the deployment's secret of
method, path (with query, as sent), task id, timestamp and nonce, one per line. The node's
proxy checks it in constant time, refuses a timestamp more than `MAX_SKEW_S` away from
its clock, and a nonce it has seen within that window (`ReplayGuard`): a captured call
cannot be sent again."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-NGPU-Timestamp"
SIGNATURE_HEADER = "X-NGPU-Signature"
TASK_HEADER = "X-NGPU-Task-ID"
NONCE_HEADER = "X-NGPU-Nonce"
NONCE_MAX_CHARS = 64
PROXY_ERROR_HEADER = "X-NGPU-Proxy-Error"
"""Set by a node's proxy on an answer of its own (not the container's): `unauthorized`,
`upstream-unreachable`. The proxy strips it from the container's answers."""
MAX_SKEW_S = 30.0
_DEPLOYMENT_CONTEXT = b"ngpu deployment secret v1\n"
LOGS_PATH = "/_ngpu/logs"
"""Where a deployment's proxy serves the deployment's log to the control plane."""
_LOGS_CONTEXT = b"ngpu deployment logs v1"


def deployment_secret(call_key: bytes, deployment_id: str) -> str:
    """The secret of one deployment (64 hex characters)."""
    message = _DEPLOYMENT_CONTEXT + deployment_id.encode()
    return hmac.new(call_key, message, hashlib.sha256).hexdigest()


def logs_secret(secret: str) -> str:
    """The key of reads of a deployment's log (`LOGS_PATH`), derived from its secret. A
    call signed with the deployment's own secret (the dispatcher's, on a customer's
    `paramUrl`) never verifies as a log read, nor a log read as a call."""
    return hmac.new(secret.encode(), _LOGS_CONTEXT, hashlib.sha256).hexdigest()


def signature(secret: str, method: str, path: str, task_id: str, timestamp: str, nonce: str) -> str:
    """The hex signature of one call."""
    message = "\n".join((method.upper(), path, task_id, timestamp, nonce)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(
    secret: str, method: str, path: str, task_id: str, now: float | None = None
) -> dict[str, str]:
    """The headers that authenticate a call (with the task id header)."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(16)
    return {
        TASK_HEADER: task_id,
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature(secret, method, path, task_id, timestamp, nonce),
    }


def verify(
    secret: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    now: float | None = None,
    max_skew_s: float = MAX_SKEW_S,
) -> bool:
    """Whether `headers` carry a valid, fresh signature of this call. An empty secret
    verifies nothing."""
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    presented = headers.get(SIGNATURE_HEADER, "")
    nonce = headers.get(NONCE_HEADER, "")
    if not secret or not presented or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if not nonce or len(nonce) > NONCE_MAX_CHARS:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > max_skew_s:
        return False
    task_id = headers.get(TASK_HEADER, "")
    expected = signature(secret, method, path, task_id, timestamp, nonce)
    return hmac.compare_digest(presented.encode(), expected.encode())


class ReplayGuard:
    """The nonces of verified calls for as long as their timestamps are fresh (twice
    `max_skew_s` past the timestamp, the span a skewed clock may accept them in).
    `first_use` is true once per nonce in that span. Memory: the calls of that span."""

    def __init__(self, max_skew_s: float = MAX_SKEW_S) -> None:
        self.max_skew_s = max_skew_s
        self._seen: set[str] = set()
        self._expiries: deque[tuple[float, str]] = deque()

    def first_use(self, headers: Mapping[str, str], now: float | None = None) -> bool:
        """Call after `verify` accepted `headers`: whether their nonce is new (and
        remember it)."""
        current = time.monotonic() if now is None else now
        while self._expiries and self._expiries[0][0] <= current:
            self._seen.discard(self._expiries.popleft()[1])
        nonce = headers.get(NONCE_HEADER, "")
        if nonce in self._seen:
            return False
        self._seen.add(nonce)
        self._expiries.append((current + 2 * self.max_skew_s, nonce))
        return True

    def __len__(self) -> int:
        return len(self._seen)
