import zlib
from dataclasses import replace

import pytest

from events.task import TaskFailed, TaskRetried
from services.scheduler import (
    WORKSPACE,
    NotRetryableError,
    Placement,
    SchedulerSettings,
    StalePlacementError,
    Unschedulable,
    build_profile,
    dispatch_event,
    retry_event,
    schedule,
)
from tests.services.scheduler.builders import (
    Cluster,
    dispatched,
    failed,
    node_registered,
    submitted,
)


def _placed(decision: Placement | Unschedulable) -> Placement:
    assert isinstance(decision, Placement), decision
    return decision


def _refused(decision: Placement | Unschedulable) -> Unschedulable:
    assert isinstance(decision, Unschedulable), decision
    return decision


def _two_nodes(concurrency: int = 1) -> Cluster:
    c = Cluster()
    c.node("n1", ["RTX4090", "RTX4090"], region="eu")
    c.node("n2", ["RTX4090", "RTX4090"], region="us")
    c.workspace("ws", concurrency=concurrency)
    c.replica("d1", "n1", "ws", host_ports={"8080": 31001})
    c.replica("d2", "n2", "ws", host_ports={"8080": 31002})
    return c


def test_placement_names_the_target_and_builds_the_dispatch() -> None:
    c = _two_nodes()
    p = _placed(schedule(c.state, c.request("t1", "ws")))
    expected_port = 31001 if p.node_id == "n1" else 31002
    assert (p.host, p.address) == (f"host-{p.node_id}", f"0xaddr-{p.node_id}")
    assert (p.container_port, p.host_port, p.feasible) == (8080, expected_port, 2)
    event = dispatch_event(c.state, submitted("t1", "ws"), p, attempt=1)
    assert (event.task_id, event.workspace_id, event.attempt) == ("t1", "ws", 1)
    assert (event.node_id, event.deployment_id) == (p.node_id, p.deployment_id)
    assert (event.node_ip, event.node_address, event.host_port) == (p.host, p.address, p.host_port)


def test_the_dispatch_pins_the_certificate_its_node_registered() -> None:
    c = Cluster()
    pinned, plain = "ab" * 32, ""
    c.fold(replace(node_registered("n1"), proxy_cert="PEM", proxy_cert_sha256=pinned))
    c.fold(node_registered("n2"))
    c.workspace("ws", concurrency=1)
    c.replica("d1", "n1", "ws", host_ports={"8080": 31001})
    c.replica("d2", "n2", "ws", host_ports={"8080": 31002})
    seen = {}
    for task_id in ("t1", "t2"):  # one slot each: one task on each node
        p = _placed(schedule(c.state, c.request(task_id, "ws")))
        event = dispatch_event(c.state, submitted(task_id, "ws"), p, attempt=1)
        c.fold(event)
        seen[event.node_id] = event.proxy_cert_sha256
    assert seen == {"n1": pinned, "n2": plain}


def test_the_dispatch_carries_the_request_from_submission_through_retries() -> None:
    c = _two_nodes()
    task = replace(
        submitted("t1", "ws"),
        param_url="/v1/infer?x=1",
        request_body="aGk=",
        body_encoding="base64",
        content_type="application/octet-stream",
        timeout_s=12.5,
    )
    c.fold(task)
    queued = c.state.queue.get("t1")
    assert queued is not None
    p = _placed(schedule(c.state, c.request("t1", "ws")))
    for source in (task, queued):
        event = dispatch_event(c.state, source, p, attempt=1)
        assert (event.param_url, event.request_body, event.body_encoding) == (
            "/v1/infer?x=1",
            "aGk=",
            "base64",
        )
        assert (event.content_type, event.timeout_s) == ("application/octet-stream", 12.5)
    first = dispatch_event(c.state, queued, p, attempt=1)
    c.fold(first, failed(first))
    c.fold(retry_event(c.state, failed(first)))
    requeued = c.state.queue.get("t1")
    assert requeued is not None and requeued.payload == queued.payload


def test_port_zero_means_the_workspace_default_port() -> None:
    c = Cluster()
    c.node("n1")
    c.workspace("ws", ports=(9000, 8080))
    c.replica("d1", "n1", "ws", host_ports={"8080": 1, "9000": 2})
    p = _placed(schedule(c.state, c.request("t", "ws", port=0)))
    assert (p.container_port, p.host_port) == (9000, 2)


def test_least_loaded_node_wins() -> None:
    c = _two_nodes(concurrency=4)
    c.fold(dispatched("busy", "ws", "n1", "d1"))
    for i in range(20):
        assert _placed(schedule(c.state, c.request(f"t{i}", "ws"))).node_id == "n2"


def test_preferred_region_wins_when_other_scores_tie() -> None:
    c = _two_nodes()
    for i in range(20):
        p = _placed(schedule(c.state, c.request(f"t{i}", "ws", region="us")))
        assert p.node_id == "n2"


def test_ties_are_broken_by_task_id_deterministically_and_spread() -> None:
    c = _two_nodes()
    chosen = {_placed(schedule(c.state, c.request(f"t{i}", "ws"))).node_id for i in range(40)}
    assert chosen == {"n1", "n2"}
    for i in range(10):
        first = schedule(c.state, c.request(f"t{i}", "ws"))
        assert schedule(c.state, c.request(f"t{i}", "ws")) == first
        assert schedule(c.rebuilt(), c.request(f"t{i}", "ws")) == first


def test_ties_go_to_the_smallest_crc32_of_task_and_node_id() -> None:
    c = Cluster()
    c.workspace("ws")
    for i in range(5):
        c.node(f"n{i}")
        c.replica(f"d{i}", f"n{i}", "ws")
    for task_id in ("a", "b", "task-42", "zz"):
        expected = min(
            (f"n{i}" for i in range(5)), key=lambda n: zlib.crc32(f"{task_id}{n}".encode())
        )
        assert _placed(schedule(c.state, c.request(task_id, "ws"))).node_id == expected


def test_excluded_and_busy_nodes_are_skipped() -> None:
    c = _two_nodes()
    p = _placed(schedule(c.state, c.request("t", "ws", excluded=["n2"])))
    assert p.node_id == "n1"
    c.fold(dispatched("x", "ws", "n1", "d1"))
    refused = _refused(schedule(c.state, c.request("t", "ws", excluded=["n2"])))
    assert refused.reasons == {
        "FreeSlot": ("1 node with every slot busy (1 per replica)",),
        "NotExcluded": ("1 node that already failed this task",),
    }
    assert refused.evaluated == 2


def test_unschedulable_reasons_count_nodes_per_plugin() -> None:
    c = Cluster()
    for i in range(3):
        c.node(f"n{i}", ["RTX4090"])
        c.replica(f"d{i}", f"n{i}", "ws")
    c.node("n3", ["RTX4090", "RTX4090"])
    c.replica("d3", "n3", "ws")
    c.drain("n3")
    c.workspace("ws", gpu_count=2)
    refused = _refused(schedule(c.state, c.request("t", "ws", gpu_count=2)))
    assert refused.reasons == {
        "NodeSchedulable": ("1 node draining",),
        "GpuFit": ("3 nodes without RTX4090 x2",),
    }
    assert refused.message == "NodeSchedulable: 1 node draining; GpuFit: 3 nodes without RTX4090 x2"


def test_stale_heartbeat_is_rejected_at_decision_time() -> None:
    c = _two_nodes()
    c.heartbeat("n2", t=100)
    p = _placed(schedule(c.state, c.request("t", "ws", t=110)))
    assert p.node_id == "n2"
    refused = _refused(schedule(c.state, c.request("t", "ws", t=200)))
    assert refused.reasons == {"HeartbeatFresh": ("2 nodes with no recent heartbeat",)}


def test_no_ready_replica_says_what_is_pending() -> None:
    c = Cluster()
    c.node("n1")
    c.workspace("ws")
    c.replica("d1", "n1", "ws", phase="starting")
    refused = _refused(schedule(c.state, c.request("t", "ws")))
    assert refused.reasons == {
        "DeploymentReady": ("no ready replica of workspace ws (1 starting)",)
    }
    refused = _refused(schedule(c.state, c.request("t", "nope")))
    assert refused.reasons == {
        "DeploymentReady": ("no ready replica of workspace nope (workspace not registered)",)
    }


def test_deleted_workspace_is_unschedulable_even_with_replicas_left() -> None:
    c = _two_nodes()
    c.delete_workspace("ws")
    refused = _refused(schedule(c.state, c.request("t", "ws")))
    assert list(refused.reasons) == [WORKSPACE]


def test_max_feasible_bounds_the_scan() -> None:
    c = Cluster()
    c.workspace("ws")
    for i in range(10):
        c.node(f"n{i}")
        c.replica(f"d{i}", f"n{i}", "ws")
    bounded = build_profile(SchedulerSettings(max_feasible=3))
    assert _placed(schedule(c.state, c.request("t", "ws"), bounded)).feasible == 3
    unbounded = build_profile(SchedulerSettings(max_feasible=0))
    assert _placed(schedule(c.state, c.request("t", "ws"), unbounded)).feasible == 10


def test_schedule_does_not_change_the_state() -> None:
    c = _two_nodes()
    before = (dict(c.state.deployments), dict(c.state.nodes))
    schedule(c.state, c.request("t", "ws"))
    assert (dict(c.state.deployments), dict(c.state.nodes)) == before


def test_dispatch_event_refuses_a_stale_or_foreign_placement() -> None:
    c = _two_nodes()
    p = _placed(schedule(c.state, c.request("t1", "ws")))
    with pytest.raises(StalePlacementError):
        dispatch_event(c.state, submitted("other", "ws"), p, 1)
    with pytest.raises(StalePlacementError):
        dispatch_event(c.state, submitted("t1", "ws"), p, 0)
    with pytest.raises(StalePlacementError):
        dispatch_event(c.state, submitted("t1", "ws"), replace(p, deployment_id="nope"), 1)
    c.lose(p.node_id)
    with pytest.raises(StalePlacementError):
        dispatch_event(c.state, submitted("t1", "ws"), p, 1)


def test_retry_event_accumulates_excluded_nodes() -> None:
    c = _two_nodes()
    c.node("n3", ["RTX4090"])
    c.replica("d3", "n3", "ws", host_ports={"8080": 31003})
    first = dispatched("t1", "ws", "n1", "d1")
    c.fold(submitted("t1", "ws"), first, failed(first))
    retry = retry_event(c.state, failed(first))
    assert (retry.attempt, retry.excluded_node_ids) == (2, ("n1",))
    c.fold(retry)
    second = dispatched("t1", "ws", "n2", "d2", attempt=2)
    c.fold(second, failed(second))
    again = retry_event(c.state, failed(second))
    assert isinstance(again, TaskRetried)
    assert (again.attempt, again.excluded_node_ids) == (3, ("n1", "n2"))
    with pytest.raises(NotRetryableError):
        retry_event(c.state, failed(second, retryable=False))


def test_a_failure_with_every_replica_on_an_excluded_node_ends_the_task() -> None:
    c = _two_nodes()
    first = dispatched("t1", "ws", "n1", "d1")
    c.fold(submitted("t1", "ws"), first, failed(first))
    retry = retry_event(c.state, failed(first))
    assert isinstance(retry, TaskRetried)
    c.fold(retry)
    second = dispatched("t1", "ws", "n2", "d2", attempt=2)
    c.fold(second, failed(second))
    ended = retry_event(c.state, failed(second))
    assert isinstance(ended, TaskFailed) and not ended.retryable
    assert (ended.attempt, ended.node_id, ended.code) == (2, "n2", failed(second).code)
    assert "no other node" in ended.reason
    c.fold(ended)
    assert "t1" not in c.state.tasks and len(c.state.queue) == 0
