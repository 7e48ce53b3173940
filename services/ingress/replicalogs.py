"""Reading a workspace's replicas' logs from their nodes, on demand.

The agent keeps each deployment's output (`nodeagent.logstream`); the control plane asks
each node running one of the workspace's deployments through that deployment's proxy,
as the dispatcher calls it: at the node's registered host (checked again, as before
every call: `services.hosts`) and the proxy port the deployment reported ready, over
HTTPS pinned to the node's registered certificate, signed with the deployment's log key
(`callsign.logs_secret`). No caller chooses a host, and only the control plane (which
alone holds `NGPU_NODE_CALL_KEY`) can read a node's logs. The lines never pass through
the event log."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import orjson

from services.callsign import LOGS_PATH, deployment_secret, logs_secret, sign
from services.dispatcher.call import pinned
from services.hosts import HostPolicy, host_refusal
from services.ingress.directory import Directory
from services.nodeagent.logstream import MAX_LINE_CHARS, clip

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
"""A non-following read's whole answer must arrive within this."""


class ReplicaLogError(Exception):
    """A node's log could not be read; the message says why (never a secret)."""


@dataclass(frozen=True, slots=True)
class Replica:
    """One deployment of the workspace and where its log is read. `port` is 0 while the
    control plane knows no proxy port of it (it has not been ready)."""

    deployment_id: str
    node_id: str
    state: str
    host: str
    port: int
    pin: str
    secret: str = field(repr=False)

    def url(self, query: dict[str, str]) -> str:
        host = self.host
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass  # a DNS name
        scheme = "https" if self.pin else "http"
        return f"{scheme}://{host}:{self.port}{LOGS_PATH}?{urlencode(query)}"


def replicas(directory: Directory, workspace_id: str, call_key: bytes) -> list[Replica]:
    """The workspace's deployments on nodes not lost, not stopped, by node then id."""
    found = []
    for node_id, node in sorted(directory.nodes.items()):
        if node.lost:
            continue
        for deployment_id, d in sorted(node.deployments.items()):
            if d.spec.workspace_id != workspace_id or d.state == "stopped":
                continue
            port = d.host_ports.get(str(d.spec.ports[0]), 0) if d.spec.ports else 0
            secret = logs_secret(deployment_secret(call_key, deployment_id))
            reg = node.registered
            found.append(Replica(deployment_id, node_id, d.state, reg.host, port,
                                 reg.proxy_cert_sha256, secret))  # fmt: skip
    return found


async def read_lines(
    session: aiohttp.ClientSession,
    replica: Replica,
    *,
    tail: int,
    follow: bool,
    max_s: float,
    hosts: HostPolicy | None,
) -> AsyncIterator[str]:
    """The replica's last `tail` lines, then (`follow`) new ones for up to `max_s`.
    Raises `ReplicaLogError`."""
    if not replica.port:
        raise ReplicaLogError("the replica has not been ready: no proxy port is known")
    refusal = hosts and await host_refusal(replica.host, hosts)
    if refusal:
        raise ReplicaLogError(f"the node's address is refused: {refusal}")
    query = {"tail": str(tail), "follow": "1" if follow else "0", "max_s": f"{max_s:g}"}
    url = replica.url(query)
    path = url[url.index(LOGS_PATH) :]
    try:
        tls: aiohttp.Fingerprint | bool = pinned(replica.pin) if replica.pin else True
    except ValueError as exc:
        raise ReplicaLogError("the node's certificate pin is malformed") from exc
    timeout = aiohttp.ClientTimeout(
        total=max_s + READ_TIMEOUT_S if follow else READ_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S
    )
    try:
        async with session.get(
            url, headers=sign(replica.secret, "GET", path, "logs"), timeout=timeout, ssl=tls,
            allow_redirects=False,
        ) as response:  # fmt: skip
            if response.status != 200:
                raise ReplicaLogError(f"the node answered HTTP {response.status}")
            pending = b""
            async for chunk in response.content.iter_any():
                *complete, pending = (pending + chunk).split(b"\n")
                for raw in complete:
                    yield _line(raw)
                if len(pending) > _MAX_RAW_LINE:  # an agent that never ends its line
                    raise ReplicaLogError("the node sent a line too long")
    except aiohttp.ServerFingerprintMismatch as exc:
        raise ReplicaLogError("the node presented another certificate than it registered") from exc
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ReplicaLogError(f"the node could not be read: {type(exc).__name__}") from exc


_MAX_RAW_LINE = MAX_LINE_CHARS * 6 + 64
"""The longest NDJSON line a clipped log line makes (a JSON escape takes 6 bytes)."""


def _line(raw: bytes) -> str:
    """One NDJSON line of the agent's answer; anything else as text, both clipped."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return clip(raw.decode("utf-8", "replace").rstrip("\n"))
    line = document.get("line") if isinstance(document, dict) else None
    return clip(line if isinstance(line, str) else str(document))
