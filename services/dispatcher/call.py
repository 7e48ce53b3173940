"""One call of a node container for a `TaskDispatched`, and the event that records how it
ended. The target is always the dispatch's `node_ip:host_port` — values the scheduler took
from a registered node and its deployment — and the path the ingress validated; over
HTTPS pinned to the node's registered certificate when it registered one
(`services.certs`): a peer presenting another fails the attempt before the request is
sent (`node_certificate_mismatch`, retryable on another node).

A dispatch with `stream` hands each chunk of a successful (< 400) response to an
`OutputSink` as it is read, besides keeping the whole body (within `max_response_bytes`)
for its `TaskCompleted`. An attempt whose output was handed out is not retried when it
fails: its readers already hold part of it."""

from __future__ import annotations

import base64
import functools
import ipaddress
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
from yarl import URL

from events import BodyEncoding, TaskCompleted, TaskDispatched, TaskFailed, utc_now
from services import tracing
from services.callsign import PROXY_ERROR_HEADER, deployment_secret, sign
from services.hosts import HostPolicy, host_refusal
from services.output import OutputChunk, OutputSink


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """`max_attempts` bounds re-dispatches; `max_response_bytes` the body kept;
    `call_key` derives each deployment's secret, with which every call is signed for the
    node's proxy (empty: calls go unsigned, for tests against a bare container)."""

    max_attempts: int = 3
    max_response_bytes: int = 8 << 20
    call_key: bytes = field(default=b"", repr=False)
    hosts: HostPolicy | None = None
    """Checked before each call (`services.hosts`; None: not checked)."""


def target_url(dispatch: TaskDispatched) -> str:
    """`https` when the node registered its proxies' certificate, else `http`."""
    host = dispatch.node_ip
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a DNS name
    scheme = "https" if dispatch.proxy_cert_sha256 else "http"
    return f"{scheme}://{host}:{dispatch.host_port}{dispatch.param_url}"


@functools.lru_cache(maxsize=4096)
def pinned(sha256: str) -> aiohttp.Fingerprint:
    """What a call to a node whose certificate has this SHA-256 (hex) accepts: that
    certificate only, by the digest of its DER, with no CA, host name or date check (TLS
    itself proves the peer holds its key). One object per pin: aiohttp pools connections
    by it. Raises `ValueError` for a malformed digest."""
    return aiohttp.Fingerprint(bytes.fromhex(sha256))


def request_body(dispatch: TaskDispatched) -> bytes:
    if dispatch.body_encoding == "base64":
        return base64.b64decode(dispatch.request_body)
    return dispatch.request_body.encode()


def headers_for(dispatch: TaskDispatched, call_key: bytes = b"") -> dict[str, str]:
    """The call's headers; with `call_key`, signed for the deployment's proxy; with traces
    on, the current span's `traceparent` (and `tracestate`)."""
    headers = {
        "Content-Type": dispatch.content_type,
        "X-NGPU-Task-ID": dispatch.task_id,
        "X-NGPU-Attempt": str(dispatch.attempt),
    }
    if dispatch.stream:
        headers["Accept"] = STREAM_TYPE
    if tracing.ENABLED:  # the current span: `call_node`'s client span
        tracing.inject(headers)
    if call_key:
        secret = deployment_secret(call_key, dispatch.deployment_id)
        headers.update(sign(secret, "POST", dispatch.param_url, dispatch.task_id))
    return headers


def completed(
    dispatch: TaskDispatched,
    status: int,
    body: bytes,
    content_type: str,
    started: datetime,
    finished: datetime,
) -> TaskCompleted:
    """The container answered (any HTTP status: the answer is passed through)."""
    encoding: BodyEncoding
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    return TaskCompleted(
        task_id=dispatch.task_id, workspace_id=dispatch.workspace_id, attempt=dispatch.attempt,
        node_id=dispatch.node_id, node_ip=dispatch.node_ip, node_address=dispatch.node_address,
        status_code=status, response_body=text, started_at=started, finished_at=finished,
        gpu_type=dispatch.gpu_type, gpu_count=dispatch.gpu_count, body_encoding=encoding,
        content_type=content_type, revision=dispatch.revision,
    )  # fmt: skip


def failed(
    dispatch: TaskDispatched, code: str, reason: str, *, transient: bool, policy: CallPolicy
) -> TaskFailed:
    """A failed attempt; retryable when transient and attempts remain."""
    return TaskFailed(
        task_id=dispatch.task_id, workspace_id=dispatch.workspace_id, attempt=dispatch.attempt,
        node_id=dispatch.node_id, code=code, reason=reason,
        retryable=transient and dispatch.attempt < policy.max_attempts,
    )  # fmt: skip


_CHUNK_BYTES = 64 * 1024
STREAM_TYPE = "text/event-stream"


def classify(
    exc: aiohttp.ClientError | TimeoutError, dispatch: TaskDispatched
) -> tuple[str, str, bool]:
    """(code, reason, transient) of a transport failure. A connection that could not be
    made (refused, or timed out before the request went out) and a node that broke off
    are transient; a container that outlived `timeout_s` is not, unless the workspace
    opted in (`retry_on_timeout`): GPU work that overran once will overrun again, and
    every attempt is paid for."""
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        reason = "the node's proxy presented another certificate than the one it registered"
        return "node_certificate_mismatch", reason, True
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return "node_refused", f"the node could not be reached: {type(exc).__name__}: {exc}", True
    if isinstance(exc, TimeoutError):
        reason = f"the container did not answer within {dispatch.timeout_s:g}s"
        return "timeout", reason, dispatch.retry_on_timeout
    return "node_error", f"the call to the node failed: {type(exc).__name__}: {exc}", True


async def call_node(
    session: aiohttp.ClientSession,
    dispatch: TaskDispatched,
    policy: CallPolicy,
    output: OutputSink | None = None,
) -> TaskCompleted | TaskFailed:
    """Make the call (`dispatch.timeout_s` bounds all of it); never raises for anything
    the node or the network does. With `output`, a dispatch with `stream` hands its
    response's chunks there as they arrive. With traces on, in a `POST` client span whose
    context the container receives (`traceparent`): an answer of 400 or more, or a failed
    attempt (`error.type` its code), sets its error status."""
    if not tracing.ENABLED:
        return await _call(session, dispatch, policy, output)
    attributes: dict[str, tracing.AttributeValue] = {
        "http.request.method": "POST",
        "server.address": dispatch.node_ip,
        "server.port": dispatch.host_port,
        "ngpu.task_id": dispatch.task_id,
        "ngpu.attempt": dispatch.attempt,
    }
    with tracing.span("POST", kind=tracing.SpanKind.CLIENT, attributes=attributes) as span:
        outcome = await _call(session, dispatch, policy, output)
        if isinstance(outcome, TaskCompleted):
            span.set_attribute("http.response.status_code", outcome.status_code)
            if outcome.status_code >= 400:
                span.set_status(tracing.StatusCode.ERROR)
        else:
            # The code only: a reason can quote what a node or its proxy answered.
            span.set_attribute("error.type", outcome.code)
            span.set_status(tracing.StatusCode.ERROR)
        return outcome


async def _call(
    session: aiohttp.ClientSession,
    dispatch: TaskDispatched,
    policy: CallPolicy,
    output: OutputSink | None,
) -> TaskCompleted | TaskFailed:
    # Checked again at each call: a DNS name may point elsewhere than at registration.
    refusal = policy.hosts and await host_refusal(dispatch.node_ip, policy.hosts)
    if refusal:
        reason = f"the node's address is refused: {refusal}"
        return failed(dispatch, "node_address_refused", reason, transient=True, policy=policy)
    tls: aiohttp.Fingerprint | bool = True  # not used for http
    if dispatch.proxy_cert_sha256:
        try:
            tls = pinned(dispatch.proxy_cert_sha256)
        except ValueError:
            reason = f"the node's certificate pin is malformed: {dispatch.proxy_cert_sha256!r}"
            return failed(dispatch, "node_certificate_mismatch", reason, transient=True,
                          policy=policy)  # fmt: skip
    started = utc_now()
    handed = 0  # chunks handed to `output`
    try:
        # encoded=True: the validated path and query go out byte for byte, not re-quoted.
        async with session.post(
            URL(target_url(dispatch), encoded=True), data=request_body(dispatch),
            headers=headers_for(dispatch, policy.call_key), allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=dispatch.timeout_s), ssl=tls,
        ) as response:  # fmt: skip
            if refusal := response.headers.get(PROXY_ERROR_HEADER):
                # The node's proxy answered, not the container: the call did not happen.
                reason = f"the node's proxy refused the call: HTTP {response.status} {refusal}"
                return failed(dispatch, "node_refused", reason, transient=True, policy=policy)
            body = bytearray()
            content_type = response.headers.get("Content-Type", "application/octet-stream")
            streams = output is not None and dispatch.stream and response.status < 400
            # iter_chunked yields what has arrived as soon as it arrives (up to the size).
            async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
                body += chunk
                if len(body) > policy.max_response_bytes:
                    return failed(
                        dispatch, "response_too_large",
                        f"the container's response exceeds {policy.max_response_bytes} bytes",
                        transient=False, policy=policy,
                    )  # fmt: skip
                if streams and output is not None and chunk:
                    first = content_type if handed == 0 else ""
                    output.emit(OutputChunk(dispatch.task_id, dispatch.attempt, handed, chunk,
                                            first))  # fmt: skip
                    handed += 1
            return completed(
                dispatch, response.status, bytes(body), content_type, started, utc_now()
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        code, reason, transient = classify(exc, dispatch)
        return failed(dispatch, code, reason, transient=transient and not handed, policy=policy)
