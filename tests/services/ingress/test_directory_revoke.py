"""The directory's fold of `NodeRevoked`: the node is lost for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from events import Envelope, Event, GpuInfo, NodeHeartbeat, NodeRegistered, NodeRevoked
from services.ingress.directory import Directory

T0 = datetime(2025, 1, 1, tzinfo=UTC)
REGISTERED = NodeRegistered(
    node_id="node-1", address="0x" + "a" * 40, host="8.8.8.8", region="",
    gpus=(GpuInfo("RTX4090"),), runtime="process", token_sha256="d" * 64,
)  # fmt: skip


def _fold(directory: Directory, event: Event, s: float) -> None:
    directory.apply(Envelope(event, occurred_at=T0 + timedelta(seconds=s)))


def test_a_revoked_node_is_not_revived_by_a_heartbeat_or_a_redelivery() -> None:
    directory = Directory()
    _fold(directory, REGISTERED, 0)
    _fold(directory, NodeRevoked(node_id="node-1", reason="leaked"), 1)
    _fold(directory, NodeHeartbeat(node_id="node-1"), 2)
    _fold(directory, REGISTERED, 3)
    node = directory.nodes["node-1"]
    assert node.revoked and node.lost
    assert not node.healthy(T0 + timedelta(seconds=3), 15)
    assert directory.assignments("node-1") == []
