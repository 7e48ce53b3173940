"""Node events: GPU hosts joining, staying alive, leaving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from events import topics
from events.base import Event


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU of a node. `type` is the normalized name (e.g. `RTX4090`)."""

    type: str
    memory_mb: int = 0


@dataclass(frozen=True, slots=True)
class NodeEvent(Event):
    KEY_FIELD: ClassVar[str] = "node_id"
    TOPIC: ClassVar[str] = topics.NODES


@dataclass(frozen=True, slots=True)
class NodeRegistered(NodeEvent):
    """A node joined. `host` is the only address the dispatcher will ever call on it;
    `token_sha256` is the digest of its per-node token (the token itself is never stored).
    `proxy_cert` is the PEM certificate its agent's proxies serve and `proxy_cert_sha256`
    the SHA-256 of its DER, computed by the control plane: the dispatcher calls the node
    over HTTPS and accepts that certificate only. Both empty: the node's proxies serve
    plain HTTP (an agent run with `--no-proxy-tls`, or one older than this field)."""

    node_id: str
    address: str
    host: str
    region: str
    gpus: tuple[GpuInfo, ...]
    runtime: str
    token_sha256: str
    proxy_cert: str = ""
    proxy_cert_sha256: str = ""


@dataclass(frozen=True, slots=True)
class NodeHeartbeat(NodeEvent):
    """The node is alive; `in_flight` is the number of requests its containers are serving.
    Liveness, not history: on its own short-lived topic, never archived (folds compare
    envelope times, so its order against the node topic's events does not matter)."""

    TOPIC: ClassVar[str] = topics.LIVENESS

    node_id: str
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class NodeLost(NodeEvent):
    """The node stopped heartbeating (or was removed); its replicas must be re-placed."""

    node_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class NodeDrained(NodeEvent):
    """The node takes no new work; what it runs finishes."""

    node_id: str


@dataclass(frozen=True, slots=True)
class NodeRevoked(NodeEvent):
    """An operator removed the node: its token is refused from now on, it is lost for
    good (a later heartbeat does not bring it back), and its replicas are re-placed."""

    node_id: str
    reason: str = ""
