from datetime import datetime

import pytest

from events.deployment import DeploymentReady
from events.envelope import Envelope
from events.node import NodeHeartbeat
from events.task import TaskCancelled, TaskExpired, TaskRetried
from events.workspace import WorkspaceUpdated
from services.scheduler import (
    ClusterState,
    DeploymentPhase,
    InvalidSchedulerSettings,
    NaiveDatetimeError,
    NodeStatus,
)
from tests.services.scheduler.builders import (
    T0,
    Cluster,
    at,
    completed,
    dispatched,
    failed,
    node_registered,
    submitted,
)


def _cluster(concurrency: int = 2) -> Cluster:
    c = Cluster()
    c.node("n1", ["NVIDIA GeForce RTX 4090", "RTX 4090"])
    c.node("n2", ["NVIDIA A100-SXM4-80GB"], region="us")
    c.workspace("ws", concurrency=concurrency)
    c.replica("d1", "n1", "ws")
    return c


def test_nodes_fold_with_normalized_gpus_and_heartbeat_times() -> None:
    c = _cluster()
    c.heartbeat("n1", t=12.5)
    n1 = c.state.nodes["n1"]
    assert n1.gpus == {"RTX4090": 2}
    assert c.state.nodes["n2"].gpus == {"A100": 1}
    assert n1.last_heartbeat_s == at(12.5).timestamp()
    assert (n1.host, n1.address, n1.status) == ("host-n1", "0xaddr-n1", NodeStatus.ACTIVE)


def test_a_late_heartbeat_does_not_move_the_clock_back() -> None:
    c = _cluster()
    c.heartbeat("n1", t=20)
    c.heartbeat("n1", t=10)
    assert c.state.nodes["n1"].last_heartbeat_s == at(20).timestamp()


def test_heartbeat_of_an_unknown_node_is_ignored() -> None:
    c = _cluster()
    c.heartbeat("ghost", t=1)
    assert "ghost" not in c.state.nodes


def test_lost_node_loses_its_replicas_and_a_later_heartbeat_revives_it_empty() -> None:
    c = _cluster()
    c.lose("n1", t=100)
    assert c.state.nodes["n1"].status is NodeStatus.LOST
    assert c.state.deployments == {}
    assert c.state.ready_deployment_ids("ws") == ()
    c.heartbeat("n1", t=99)  # sent before it was declared lost
    assert c.state.nodes["n1"].status is NodeStatus.LOST
    c.heartbeat("n1", t=101)
    assert c.state.nodes["n1"].status is NodeStatus.ACTIVE
    assert c.state.node_deployment_ids("n1") == ()


def test_drained_node_keeps_its_replicas_until_reregistered() -> None:
    c = _cluster()
    c.drain("n1")
    c.heartbeat("n1", t=5)
    assert c.state.nodes["n1"].status is NodeStatus.DRAINING
    assert c.state.node_deployment_ids("n1") == ("d1",)
    c.node("n1", ["RTX4090"])
    assert c.state.nodes["n1"].status is NodeStatus.ACTIVE


def test_deployment_lifecycle_and_indexes() -> None:
    c = _cluster()
    c.replica("d2", "n1", "ws", phase="starting")
    c.replica("d3", "n2", "ws", phase="failed", gpu_type="A100")
    c.replica("d4", "n2", "ws", phase="stopped", gpu_type="A100")
    assert c.state.ready_deployment_ids("ws") == ("d1",)
    assert c.state.live_deployment_ids("ws") == ("d1", "d2")
    assert c.state.deployments["d2"].phase is DeploymentPhase.STARTING
    assert c.state.deployment_failures("ws", "n2") == 1
    assert c.state.deployment_serial("ws") == 4
    assert c.state.deployments["d1"].host_ports == {8080: 30000}


def test_an_ended_replica_is_not_revived_by_a_late_duplicate() -> None:
    c = _cluster()
    c.replica("d9", "n1", "ws", phase="stopped")
    ids = {"deployment_id": "d9", "node_id": "n1", "workspace_id": "ws"}
    c.fold(DeploymentReady(**ids, host_ports={"8080": 1}))
    c.replica("d9", "n1", "ws")
    assert "d9" not in c.state.deployments


def test_workspace_update_keeps_what_the_update_does_not_carry() -> None:
    c = _cluster(concurrency=3)
    c.fold(
        WorkspaceUpdated(
            workspace_id="ws", env={"A": "1"}, replicas_min=2, replicas_max=5, timeout_s=9.0
        )
    )
    spec = c.state.workspaces["ws"]
    assert (spec.replicas_min, spec.replicas_max, spec.concurrency) == (2, 5, 3)
    assert spec.env == {"A": "1"}
    c.delete_workspace("ws")
    assert "ws" not in c.state.workspaces
    assert c.state.is_deleted("ws")


def test_dispatch_takes_a_slot_and_completion_frees_it_with_stats() -> None:
    c = _cluster()
    c.fold(submitted("t1", "ws"), t=1)
    assert "t1" in c.state.queue
    d = dispatched("t1", "ws", "n1", "d1")
    c.fold(d, t=2)
    assert "t1" not in c.state.queue
    assert c.state.deployments["d1"].in_flight == 1
    assert c.state.nodes["n1"].in_flight == 1
    assert c.state.in_flight_by_workspace == {"ws": 1}
    c.fold(completed(d, took_s=2.0), t=4)
    dep, node = c.state.deployments["d1"], c.state.nodes["n1"]
    assert (dep.in_flight, node.in_flight, dep.served) == (0, 0, 1)
    assert (node.successes, node.latency_ewma_s, dep.latency_ewma_s) == (1, 2.0, 2.0)
    assert dep.last_served_s == at(4).timestamp()
    assert c.state.workspace_latency_s("ws") == 2.0
    assert c.state.tasks == {}
    assert c.state.in_flight_by_workspace == {}


def test_dispatches_folded_before_their_node_and_replica_still_hold_slots() -> None:
    # On Kafka the tasks topic may replay before the nodes topic.
    c = Cluster()
    c.workspace("ws", concurrency=2)
    d = dispatched("t1", "ws", "n1", "d1")
    c.fold(submitted("t1", "ws"), d, t=1)
    c.node("n1", ["RTX 4090"])
    c.replica("d1", "n1", "ws")
    assert c.state.nodes["n1"].in_flight == 1
    assert c.state.deployments["d1"].in_flight == 1
    c.fold(completed(d), t=3)
    assert (c.state.nodes["n1"].in_flight, c.state.deployments["d1"].in_flight) == (0, 0)


def test_latency_is_an_ewma() -> None:
    c = _cluster()
    state = ClusterState(ewma_alpha=0.5)
    for event, when in c.log:
        state.apply_event(event, when)
    for i, took in enumerate((2.0, 4.0, 8.0)):
        d = dispatched(f"t{i}", "ws", "n1", "d1")
        state.apply_event(d, T0)
        state.apply_event(completed(d, took_s=took), T0)
    assert state.nodes["n1"].latency_ewma_s == pytest.approx(0.5 * 8 + 0.5 * (0.5 * 4 + 0.5 * 2))


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5])
def test_ewma_alpha_is_validated(alpha: float) -> None:
    with pytest.raises(InvalidSchedulerSettings):
        ClusterState(ewma_alpha=alpha)


def test_duplicate_deliveries_change_nothing() -> None:
    c = _cluster()
    d = dispatched("t1", "ws", "n1", "d1")
    c.fold(submitted("t1", "ws"), submitted("t1", "ws"), d, d)
    assert c.state.deployments["d1"].in_flight == 1
    done = completed(d)
    c.fold(done, done)
    assert c.state.deployments["d1"].in_flight == 0
    assert c.state.nodes["n1"].successes == 1


def test_late_duplicates_of_a_finished_task_take_no_slot() -> None:
    c = _cluster()
    d = dispatched("t1", "ws", "n1", "d1")
    c.fold(submitted("t1", "ws"), d, completed(d))
    c.fold(submitted("t1", "ws"), d)
    assert c.state.deployments["d1"].in_flight == 0
    assert c.state.assignments == {} and c.state.tasks == {} and len(c.state.queue) == 0


def test_ready_index_follows_replicas_after_it_was_read() -> None:
    c = _cluster()
    assert c.state.ready_deployment_ids("ws") == ("d1",)
    c.replica("d2", "n1", "ws")
    assert c.state.ready_deployment_ids("ws") == ("d1", "d2")
    c.replica("d3", "n2", "ws", phase="starting")
    assert c.state.live_deployment_ids("ws") == ("d1", "d2", "d3")
    c.replica("d1", "n1", "ws", phase="stopped")  # a duplicate request, then a stop
    assert c.state.ready_deployment_ids("ws") == ("d2",)


def test_retry_cycle_releases_counts_failure_and_requeues_with_exclusions() -> None:
    c = _cluster()
    first = dispatched("t1", "ws", "n1", "d1")
    c.fold(submitted("t1", "ws"), first, failed(first), t=1)
    assert c.state.deployments["d1"].in_flight == 0
    node = c.state.nodes["n1"]
    assert (node.failures, node.consecutive_failures, node.last_failure_s) == (
        1,
        1,
        at(1).timestamp(),
    )
    assert "t1" not in c.state.queue and "t1" in c.state.tasks
    c.fold(first)  # a late duplicate of the failed attempt takes no slot
    assert c.state.deployments["d1"].in_flight == 0
    retry = TaskRetried(
        task_id="t1", workspace_id="ws", attempt=2, excluded_node_ids=("n1",), reason="x"
    )
    c.fold(retry)
    queued = c.state.queue.get("t1")
    assert queued is not None
    assert (queued.attempt, queued.excluded_node_ids) == (2, frozenset({"n1"}))
    second = dispatched("t1", "ws", "n1", "d1", attempt=2)
    c.fold(second, retry)  # a duplicate retry after the dispatch does not requeue
    assert "t1" not in c.state.queue
    assert c.state.deployments["d1"].in_flight == 1


def test_a_duplicate_of_an_older_retry_does_not_requeue_the_task() -> None:
    c = _cluster()
    one = dispatched("t1", "ws", "n1", "d1")
    c.fold(submitted("t1", "ws"), one, failed(one))
    retry2 = TaskRetried(
        task_id="t1", workspace_id="ws", attempt=2, excluded_node_ids=("n1",), reason="x"
    )
    two = dispatched("t1", "ws", "n2", "d2", attempt=2)
    c.fold(retry2, two, failed(two), retry2)
    assert "t1" not in c.state.queue  # waits for its third attempt's own retry
    task = c.state.tasks["t1"]
    assert task.attempt == 3


def test_non_retryable_failure_is_terminal() -> None:
    c = _cluster()
    d = dispatched("t1", "ws", "n1", "d1")
    c.fold(submitted("t1", "ws"), d, failed(d, retryable=False))
    assert c.state.tasks == {}
    assert c.state.deployments["d1"].in_flight == 0


def test_first_terminal_event_wins_and_frees_whatever_slot_is_held() -> None:
    c = _cluster()
    one = dispatched("t1", "ws", "n1", "d1")
    two = dispatched("t1", "ws", "n1", "d1", attempt=2)
    c.fold(submitted("t1", "ws"), one, two)
    assert c.state.deployments["d1"].in_flight == 1  # attempt 2 replaced attempt 1
    c.fold(completed(one))  # a stale attempt answered first: the task is done
    assert c.state.deployments["d1"].in_flight == 0
    assert c.state.tasks == {}


@pytest.mark.parametrize(
    "terminal",
    [
        TaskCancelled(task_id="t1", workspace_id="ws", reason="user"),
        TaskExpired(task_id="t1", workspace_id="ws", waited_s=5.0),
    ],
)
def test_cancel_and_expire_remove_waiting_and_running_tasks(
    terminal: TaskCancelled | TaskExpired,
) -> None:
    c = _cluster()
    c.fold(submitted("t1", "ws"), terminal)
    assert "t1" not in c.state.queue and c.state.tasks == {}
    c.fold(submitted("t1", "ws"), dispatched("t1", "ws", "n1", "d1"), terminal)
    assert c.state.deployments["d1"].in_flight == 0


def test_failure_streak_resets_on_success() -> None:
    c = _cluster()
    for i in range(3):
        d = dispatched(f"f{i}", "ws", "n1", "d1")
        c.fold(d, failed(d))
    assert c.state.nodes["n1"].consecutive_failures == 3
    ok = dispatched("ok", "ws", "n1", "d1")
    c.fold(ok, completed(ok))
    assert (c.state.nodes["n1"].consecutive_failures, c.state.nodes["n1"].failures) == (0, 3)


def test_apply_uses_the_envelope_time_and_rejects_naive_times() -> None:
    state = ClusterState()
    state.apply(Envelope(node_registered("n1"), occurred_at=at(42)))
    assert state.nodes["n1"].last_heartbeat_s == at(42).timestamp()
    with pytest.raises(NaiveDatetimeError):
        state.apply_event(NodeHeartbeat(node_id="n1"), datetime(2025, 1, 1))


def test_copy_is_independent_and_rebuild_is_identical() -> None:
    c = _cluster()
    c.fold(submitted("t1", "ws"), dispatched("t1", "ws", "n1", "d1"), submitted("t2", "ws"))
    copy = c.state.copy()
    c.fold(dispatched("t2", "ws", "n1", "d1"))
    c.replica("d5", "n2", "ws", gpu_type="A100")
    assert copy.deployments["d1"].in_flight == 1
    assert "t2" in copy.queue
    assert copy.ready_deployment_ids("ws") == ("d1",)
    rebuilt = c.rebuilt()
    assert rebuilt.deployments == c.state.deployments
    assert rebuilt.nodes == c.state.nodes
    assert rebuilt.tasks == c.state.tasks
    assert rebuilt.assignments == c.state.assignments
