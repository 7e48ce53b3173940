"""A revoked node (`NodeRevoked`): lost for good, its replicas placed elsewhere."""

from __future__ import annotations

from events.deployment import DeploymentRequested
from events.node import NodeLost, NodeRevoked
from services.scheduler import NodeStatus, SchedulerSettings, plan_replicas
from services.scheduler.plugins import node_schedulable
from services.scheduler.plugins.node_schedulable import REVOKED
from tests.services.scheduler.builders import Cluster, at, dispatched, node_registered
from tests.services.scheduler.plugins.values import ctx, dep, node

NOW = 10.0


def _revoke(c: Cluster, node_id: str, t: float = 1.0) -> None:
    c.fold(NodeRevoked(node_id=node_id, reason="test"), t=t)


def test_a_revoked_nodes_replicas_end_and_are_placed_elsewhere() -> None:
    c = Cluster()
    c.node("n1")
    c.node("n2")
    c.workspace("ws")
    c.replica("d1", "n1", "ws")
    c.fold(dispatched("t1", "ws", "n1", "d1"))
    _revoke(c, "n1")
    assert c.state.nodes["n1"].status is NodeStatus.REVOKED
    assert c.state.live_deployment_ids("ws") == ()
    c.heartbeat("n2", NOW)
    events = plan_replicas(c.state, at(NOW), SchedulerSettings())
    placed = [e.node_id for e in events if isinstance(e, DeploymentRequested)]
    assert placed == ["n2"]


def test_a_revoked_node_stays_revoked() -> None:
    c = Cluster()
    c.node("n1")
    _revoke(c, "n1", t=1)
    c.heartbeat("n1", 5)  # a heartbeat in flight when it was revoked
    c.fold(node_registered("n1"), t=6)  # a redelivered registration
    c.lose("n1", t=7)
    c.drain("n1", t=8)
    assert c.state.nodes["n1"].status is NodeStatus.REVOKED
    assert c.rebuilt().nodes["n1"].status is NodeStatus.REVOKED
    # Not declared lost again on every pass.
    assert not [e for e in plan_replicas(c.state, at(100.0)) if isinstance(e, NodeLost)]


def test_node_schedulable_refuses_a_revoked_node() -> None:
    plugin = node_schedulable.new(SchedulerSettings())
    assert plugin.filter(ctx(), dep(), node(status=NodeStatus.REVOKED)) == REVOKED
