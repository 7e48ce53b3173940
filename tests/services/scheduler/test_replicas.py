from collections import Counter

from events.base import Event
from events.deployment import (
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    DeploymentStopped,
)
from events.node import NodeLost
from services.scheduler import (
    DeploymentPhase,
    SchedulerSettings,
    deployment_id_for,
    detect_lost_nodes,
    plan_replicas,
)
from tests.services.scheduler.builders import Cluster, at, completed, dispatched

NOW = 10.0


def _requested(events: list[Event]) -> list[DeploymentRequested]:
    return [e for e in events if isinstance(e, DeploymentRequested)]


def _stopped(events: list[Event]) -> list[DeploymentStopped]:
    return [e for e in events if isinstance(e, DeploymentStopped)]


def _plan(c: Cluster, t: float = NOW, **settings: float) -> list[Event]:
    return plan_replicas(c.state, at(t), SchedulerSettings(**settings))  # type: ignore[arg-type]


def _make_ready(c: Cluster, events: list[Event], t: float = NOW) -> None:
    """Fold a plan, and report every requested replica ready."""
    c.fold(*events, t=t)
    for e in _requested(events):
        ids = {
            "deployment_id": e.deployment_id,
            "node_id": e.node_id,
            "workspace_id": e.workspace_id,
        }
        c.fold(DeploymentReady(**ids, host_ports={"8080": 30000}), t=t)


def test_min_replicas_are_spread_across_nodes() -> None:
    c = Cluster()
    for i in range(4):
        c.node(f"n{i}", ["RTX4090"] * 4)
    c.workspace("ws", replicas_min=3, replicas_max=3)
    events = _plan(c)
    placed = [e.node_id for e in _requested(events)]
    assert len(placed) == 3 and len(set(placed)) == 3
    request = _requested(events)[0]
    assert (request.workspace_id, request.image, request.command) == ("ws", "img:1", ("serve",))
    assert (request.gpu_type, request.gpu_count, request.ports) == ("RTX4090", 1, (8080,))


def test_replicas_share_a_node_only_when_no_other_node_fits() -> None:
    c = Cluster()
    c.node("big", ["RTX4090"] * 4)
    c.node("other", ["A100"] * 4)
    c.workspace("ws", replicas_min=3, replicas_max=3)
    assert [e.node_id for e in _requested(_plan(c))] == ["big", "big", "big"]


def test_bin_packing_picks_the_smallest_sufficient_free_gpus() -> None:
    c = Cluster()
    c.node("n8", ["RTX4090"] * 8)
    c.node("n2", ["RTX4090"] * 2)
    c.node("n1", ["RTX4090"])
    c.workspace("ws", gpu_count=2)
    assert [e.node_id for e in _requested(_plan(c))] == ["n2"]


def test_bin_packing_counts_gpus_held_by_other_replicas() -> None:
    c = Cluster()
    c.node("a", ["RTX4090"] * 4)
    c.node("b", ["RTX4090"] * 2)
    c.workspace("other", gpu_count=3, replicas_min=0, replicas_max=5)
    c.replica("held", "a", "other", phase="requested", gpu_count=3)
    c.workspace("ws")
    assert [e.node_id for e in _requested(_plan(c))] == ["a"]  # 1 free beats 2 free


def test_largest_gpu_count_is_placed_first() -> None:
    c = Cluster()
    c.node("n1", ["RTX4090"] * 4)
    c.node("n2", ["RTX4090"] * 4)
    c.workspace("a-small", gpu_count=1, replicas_min=2, replicas_max=2)
    c.workspace("b-big", gpu_count=4)
    placed = Counter((e.workspace_id, e.node_id) for e in _requested(_plan(c)))
    assert placed == {("b-big", "n1"): 1, ("a-small", "n2"): 2}


def test_no_fit_places_what_fits_and_stale_or_gpuless_nodes_get_nothing() -> None:
    c = Cluster()
    c.node("fresh", ["RTX4090"])
    c.node("stale", ["RTX4090"], t=-50)  # heartbeat older than the 30 s window
    c.node("cpu", [])
    c.workspace("ws", replicas_min=3, replicas_max=3)
    assert [e.node_id for e in _requested(_plan(c))] == ["fresh"]


def test_zero_gpu_workspaces_go_anywhere_spread() -> None:
    c = Cluster()
    c.node("cpu1", [])
    c.node("cpu2", [])
    c.workspace("ws", gpu_type="", gpu_count=0, replicas_min=2, replicas_max=2)
    assert sorted(e.node_id for e in _requested(_plan(c))) == ["cpu1", "cpu2"]


def test_a_node_where_the_workspace_failed_is_avoided() -> None:
    c = Cluster()
    c.node("a", ["RTX4090"])
    c.node("b", ["RTX4090", "RTX4090"])
    c.workspace("ws")
    c.replica("crashed", "a", "ws", phase="failed")
    assert [e.node_id for e in _requested(_plan(c))] == ["b"]


def test_lost_node_replicas_are_stopped_and_replaced_elsewhere() -> None:
    c = Cluster()
    c.node("n1", ["RTX4090"])
    c.node("n2", ["RTX4090"])
    c.workspace("ws")
    c.replica("d1", "n1", "ws")
    c.heartbeat("n2", t=100)
    events = _plan(c, t=100)  # n1 silent for 100 s > 90 s
    assert events[0] == NodeLost(node_id="n1", reason="no heartbeat for 100s (limit 90s)")
    assert _stopped(events) == [
        DeploymentStopped(deployment_id="d1", node_id="n1", workspace_id="ws", reason="node lost")
    ]
    assert [e.node_id for e in _requested(events)] == ["n2"]
    _make_ready(c, events, t=100)
    assert c.state.ready_deployment_ids("ws") == (_requested(events)[0].deployment_id,)
    assert _plan(c, t=100) == []  # converged


def test_a_replica_requested_on_an_already_lost_node_is_stopped_and_replaced() -> None:
    c = Cluster()
    c.node("n1")
    c.node("n2")
    c.workspace("ws")
    c.lose("n1")
    c.replica("late", "n1", "ws", phase="requested")
    events = _plan(c)
    assert [(e.deployment_id, e.reason) for e in _stopped(events)] == [("late", "node lost")]
    assert [e.node_id for e in _requested(events)] == ["n2"]


def test_detect_lost_nodes_uses_the_window() -> None:
    c = Cluster()
    c.node("n1")
    c.node("n2", t=50)
    assert detect_lost_nodes(c.state, at(60), 30.0) == [
        NodeLost(node_id="n1", reason="no heartbeat for 60s (limit 30s)")
    ]
    c.lose("n1", t=60)
    assert detect_lost_nodes(c.state, at(60), 30.0) == []  # already lost


def test_scale_in_stops_extras_not_ready_and_idle_first() -> None:
    c = Cluster()
    for n in ("n1", "n2", "n3", "n4"):
        c.node(n)
    c.workspace("ws", concurrency=2, replicas_min=1, replicas_max=2)
    c.replica("busy", "n1", "ws")
    c.replica("idle", "n2", "ws")
    c.replica("busy2", "n3", "ws")
    c.replica("pending", "n4", "ws", phase="starting")
    c.fold(dispatched("t1", "ws", "n1", "busy"), dispatched("t2", "ws", "n3", "busy2"))
    c.fold(dispatched("t3", "ws", "n3", "busy2"))
    events = _plan(c)
    assert [(e.deployment_id, e.reason) for e in _stopped(events)] == [
        ("pending", "scale-in"),
        ("idle", "scale-in"),
    ]
    assert _requested(events) == []


def test_within_min_and_max_nothing_changes() -> None:
    c = Cluster()
    for n in ("n1", "n2", "n3"):
        c.node(n)
    c.workspace("ws", replicas_min=1, replicas_max=3)
    c.replica("d1", "n1", "ws")
    c.replica("d2", "n2", "ws")
    assert _plan(c) == []


def test_deleted_workspace_stops_every_replica() -> None:
    c = Cluster()
    c.node("n1")
    c.node("n2")
    c.workspace("ws", replicas_min=2, replicas_max=2)
    c.replica("d1", "n1", "ws")
    c.replica("d2", "n2", "ws", phase="starting")
    c.delete_workspace("ws")
    events = _plan(c)
    assert [(e.deployment_id, e.reason) for e in events if isinstance(e, DeploymentStopped)] == [
        ("d1", "workspace deleted"),
        ("d2", "workspace deleted"),
    ]
    assert len(events) == 2


def test_busy_draining_replica_is_replaced_at_once_and_stopped_once_idle() -> None:
    c = Cluster()
    c.node("n1")
    c.node("n2")
    c.workspace("ws")
    c.replica("d1", "n1", "ws")
    task = dispatched("t1", "ws", "n1", "d1")
    c.fold(task)
    c.drain("n1")
    events = _plan(c)
    assert _stopped(events) == []  # it still serves a task
    assert [e.node_id for e in _requested(events)] == ["n2"]
    _make_ready(c, events)
    c.fold(completed(task))
    events = _plan(c)
    assert [(e.deployment_id, e.reason) for e in _stopped(events)] == [("d1", "node drained")]
    assert _requested(events) == []


def test_draining_replica_is_stopped_when_idle() -> None:
    c = Cluster()
    c.node("n1")
    c.node("n2")
    c.workspace("ws")
    c.replica("d1", "n1", "ws")
    c.drain("n1")
    events = _plan(c)
    assert [(e.deployment_id, e.reason) for e in _stopped(events)] == [("d1", "node drained")]
    assert [e.node_id for e in _requested(events)] == ["n2"]


def test_planning_is_deterministic_and_ids_advance_after_folding() -> None:
    c = Cluster()
    c.node("n1", ["RTX4090"] * 2)
    c.node("n2", ["RTX4090"] * 2)
    c.workspace("ws", replicas_min=2, replicas_max=2)
    first = _plan(c)
    assert _plan(c) == first
    assert plan_replicas(c.rebuilt(), at(NOW)) == first
    ids = [e.deployment_id for e in _requested(first)]
    assert ids == [deployment_id_for("ws", e.node_id, i) for i, e in enumerate(_requested(first))]
    c.fold(*first)
    c.fold(*first)  # a duplicate plan folds to nothing new
    assert len(c.state.live_deployment_ids("ws")) == 2
    c.lose("n1", t=1)
    c.node("n3", ["RTX4090"], t=1)
    again = _requested(_plan(c, t=1))
    assert len(again) == 1 and again[0].deployment_id not in ids
    phases = {c.state.deployments[d].phase for d in c.state.live_deployment_ids("ws")}
    assert phases == {DeploymentPhase.REQUESTED}


def test_a_replica_not_ready_by_its_deadline_is_failed_stopped_and_placed_again() -> None:
    c = Cluster()
    c.node("slow", ["RTX4090"])
    c.node("other", ["RTX4090"])
    c.workspace("ws", replicas_min=1, replicas_max=1)
    first = _plan(c, start_deadline_s=60)
    c.fold(*first, t=NOW)
    (stuck,) = _requested(first)
    c.heartbeat("slow", t=NOW + 61)
    c.heartbeat("other", t=NOW + 61)
    assert _plan(c, t=NOW + 59, start_deadline_s=60, heartbeat_window_s=100, lost_after_s=100) == []
    later = _plan(c, t=NOW + 61, start_deadline_s=60, heartbeat_window_s=100, lost_after_s=100)
    failed = [e for e in later if isinstance(e, DeploymentFailed)]
    assert [e.deployment_id for e in failed] == [stuck.deployment_id]
    assert "start deadline" in failed[0].reason
    assert [e.deployment_id for e in _stopped(later)] == [stuck.deployment_id]
    (replacement,) = _requested(later)
    assert replacement.node_id != stuck.node_id  # the stuck one still holds that GPU
    c.fold(*later, t=NOW + 61)
    assert stuck.deployment_id not in c.state.deployments
