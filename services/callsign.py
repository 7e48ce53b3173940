"""Signed calls from the gateway to a node's deployment proxy.

Each deployment has a secret: HMAC-SHA256 of its deployment id under the control plane's
node call key (`NGPU_NODE_CALL_KEY`). The ingress hands it to the node with the
assignment; the dispatcher derives it again from the `deployment_id` of a dispatch, so the
secret is never written to the event log (which is archived forever). A node learns only
the secrets of its own deployments, never the key.

The dispatcher signs each call: `X-NGPU-Timestamp` (unix seconds) and `X-NGPU-Signature`,
the hex HMAC-SHA256 under the deployment's secret of method, path (with query, as sent),
task id and timestamp, one per line. The node's proxy checks it in constant time and
refuses a timestamp more than `MAX_SKEW_S` away from its clock."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-NGPU-Timestamp"
SIGNATURE_HEADER = "X-NGPU-Signature"
TASK_HEADER = "X-NGPU-Task-ID"
PROXY_ERROR_HEADER = "X-NGPU-Proxy-Error"
"""Set by a node's proxy on an answer of its own (not the container's): `unauthorized`,
`upstream-unreachable`. The proxy strips it from the container's answers."""
MAX_SKEW_S = 30.0
_DEPLOYMENT_CONTEXT = b"ngpu deployment secret v1\n"


def deployment_secret(call_key: bytes, deployment_id: str) -> str:
    """The secret of one deployment (64 hex characters)."""
    message = _DEPLOYMENT_CONTEXT + deployment_id.encode()
    return hmac.new(call_key, message, hashlib.sha256).hexdigest()


def signature(secret: str, method: str, path: str, task_id: str, timestamp: str) -> str:
    """The hex signature of one call."""
    message = "\n".join((method.upper(), path, task_id, timestamp)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(
    secret: str, method: str, path: str, task_id: str, now: float | None = None
) -> dict[str, str]:
    """The headers that authenticate a call (with the task id header)."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        TASK_HEADER: task_id,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, method, path, task_id, timestamp),
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
    if not secret or not presented or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > max_skew_s:
        return False
    expected = signature(secret, method, path, headers.get(TASK_HEADER, ""), timestamp)
    return hmac.compare_digest(presented.encode(), expected.encode())
