"""The autoscaler on a folded state: what the load wants (queue delay or tasks per
replica), each change once its window has passed, scale-in that drains busy replicas,
scale to zero and back, and decisions that survive a new leader (they are folded)."""

from __future__ import annotations

from events.base import Event
from events.deployment import DeploymentDraining, DeploymentRequested, DeploymentStopped
from events.workspace import ReplicasScaled
from services.scheduler import dispatch_waiting, plan_replicas
from services.scheduler.autoscale import Autoscaler
from services.scheduler.config import SchedulerSettings
from tests.services.scheduler.builders import Cluster, at, completed, dispatched, submitted

SETTINGS = SchedulerSettings(heartbeat_window_s=10**9, lost_after_s=10**9)


def _cluster(nodes: int = 4, **workspace: object) -> Cluster:
    c = Cluster()
    for n in range(1, nodes + 1):
        c.node(f"n{n}")
    c.workspace("ws", **{"replicas_min": 1, "replicas_max": 4, **workspace})  # type: ignore[arg-type]
    return c


def _decide(c: Cluster, scaler: Autoscaler, t: float) -> list[ReplicasScaled]:
    decided = scaler.decide(c.state, at(t))
    c.fold(*decided, t=t)
    return decided


def _plan(c: Cluster, t: float) -> list[Event]:
    events = plan_replicas(c.state, at(t), SETTINGS)
    c.fold(*events, t=t)
    return events


def _of(kind: type, events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def test_queue_delay_above_target_scales_up_to_run_what_waits() -> None:
    c = _cluster()
    c.replica("d1", "n1", "ws")
    scaler = Autoscaler()
    c.fold(*(submitted(f"t{i}", "ws") for i in range(5)), t=0)
    dispatch_waiting(c.state, at(0))
    assert _decide(c, scaler, 3) == []  # 3 s of delay: within the 4 s target
    (decision,) = _decide(c, scaler, 5)
    assert decision.replicas == 4  # 5 tasks at 1 per replica, capped at max
    assert "queue delay 5.0s above target 4s" in decision.reason
    assert len(_of(DeploymentRequested, _plan(c, 5))) == 3
    assert _decide(c, scaler, 6) == []  # decided: nothing more wanted


def test_a_change_waits_out_its_window() -> None:
    c = _cluster(scale_up_after_s=3.0)
    c.replica("d1", "n1", "ws")
    scaler = Autoscaler()
    c.fold(submitted("t0", "ws"), submitted("t1", "ws"), t=0)
    dispatch_waiting(c.state, at(0))
    assert _decide(c, scaler, 5) == []  # wanted since 5 s
    assert _decide(c, scaler, 7) == []
    assert [d.replicas for d in _decide(c, scaler, 8)] == [2]


def test_an_idle_workspace_scales_down_after_its_window_draining_busy_replicas() -> None:
    c = _cluster(scale_down_after_s=60.0)
    for n in range(1, 5):
        c.replica(f"d{n}", f"n{n}", "ws")
    c.fold(ReplicasScaled("ws", 4, "test"), t=0)
    scaler = Autoscaler()
    c.fold(submitted("busy", "ws"), t=0)
    (running,) = [e for e in dispatch_waiting(c.state, at(0)) if hasattr(e, "deployment_id")]
    c.fold(running, t=0)
    assert _decide(c, scaler, 10) == []  # one task runs: 1 replica would do, from now
    assert _decide(c, scaler, 69) == []
    (decision,) = _decide(c, scaler, 70)
    assert decision.replicas == 1 and "1 replica(s) needed" in decision.reason
    events = _plan(c, 70)
    # The replica running the task stays; three idle ones stop.
    assert len(_of(DeploymentStopped, events)) == 3 and not _of(DeploymentDraining, events)
    assert running.deployment_id in c.state.deployments


def test_scale_in_drains_a_busy_replica_and_stops_it_once_idle() -> None:
    c = _cluster(replicas_min=1, replicas_max=2)
    c.replica("d1", "n1", "ws")
    c.replica("d2", "n2", "ws")
    c.fold(ReplicasScaled("ws", 2, "test"), t=0)
    run1, run2 = dispatched("a", "ws", "n1", "d1"), dispatched("b", "ws", "n2", "d2")
    c.fold(submitted("a", "ws"), submitted("b", "ws"), run1, run2, t=0)
    c.fold(ReplicasScaled("ws", 1, "test"), t=1)
    (draining,) = _of(DeploymentDraining, _plan(c, 1))
    assert draining.deployment_id not in c.state.ready_deployment_ids("ws")
    assert _plan(c, 2) == []  # still busy
    drained = run1 if draining.deployment_id == "d1" else run2
    c.fold(completed(drained), t=3)
    assert [e.deployment_id for e in _of(DeploymentStopped, _plan(c, 3))] == [
        draining.deployment_id
    ]


def test_scale_to_zero_and_back() -> None:
    c = _cluster(replicas_min=0, replicas_max=2, scale_down_after_s=5.0)
    c.replica("d1", "n1", "ws")
    scaler = Autoscaler()
    assert _decide(c, scaler, 0) == []  # idle from now
    assert [d.replicas for d in _decide(c, scaler, 5)] == [0]
    assert len(_of(DeploymentStopped, _plan(c, 5))) == 1
    c.fold(submitted("cold", "ws", ttl_s=120), t=10)
    assert [e for e in dispatch_waiting(c.state, at(10)) if hasattr(e, "node_id")] == []
    (decision,) = _decide(c, scaler, 10)  # at once: no window for the first replica
    assert decision.replicas == 1 and "no replica" in decision.reason
    (requested,) = _of(DeploymentRequested, _plan(c, 10))
    c.replica(requested.deployment_id, requested.node_id, "ws")
    (placed,) = dispatch_waiting(c.state, at(30))
    assert placed.task_id == "cold" and placed.deployment_id == requested.deployment_id


def test_in_flight_metric_wants_target_tasks_per_replica() -> None:
    c = _cluster(scaling_metric="in_flight", scaling_target=2.0, replicas_max=3)
    c.replica("d1", "n1", "ws")
    c.fold(*(submitted(f"t{i}", "ws") for i in range(5)), t=0)
    (decision,) = _decide(c, Autoscaler(), 0)
    assert decision.replicas == 3  # ceil(5 / 2), within max 3
    assert "target 2 per replica" in decision.reason


def test_a_fixed_workspace_is_never_scaled() -> None:
    c = _cluster(replicas_min=2, replicas_max=2)
    c.fold(*(submitted(f"t{i}", "ws") for i in range(9)), t=0)
    assert _decide(c, Autoscaler(), 100) == []


def test_a_new_leader_keeps_the_decisions_and_starts_its_windows_anew() -> None:
    c = _cluster(scale_down_after_s=60.0)
    c.replica("d1", "n1", "ws")
    c.replica("d2", "n2", "ws")
    c.fold(ReplicasScaled("ws", 2, "test"), t=0)
    rebuilt = c.rebuilt()
    assert rebuilt.desired_replicas("ws") == 2
    old, new = Autoscaler(), Autoscaler()
    old.decide(c.state, at(0))  # idle since 0 for the old leader
    assert new.decide(rebuilt, at(59)) == []  # the new one's window starts at 59
    assert new.decide(rebuilt, at(100)) == []
    assert [d.replicas for d in new.decide(rebuilt, at(119))] == [1]


def _served(c: Cluster, count: int, *, took_s: float, t: float) -> None:
    """`count` tasks submitted, run and completed at `t`, each taking `took_s`."""
    for i in range(count):
        task_id = f"s{t}-{i}"
        c.fold(submitted(task_id, "ws"), t=t)
        (placed,) = [e for e in dispatch_waiting(c.state, at(t)) if hasattr(e, "deployment_id")]
        c.fold(completed(placed, took_s=took_s), t=t)  # type: ignore[arg-type]


def test_a_steady_load_scales_down_to_what_it_needs_though_tasks_keep_arriving() -> None:
    """A task waiting for the next round at every tick must not hold a scale-down off:
    11 tasks/s of 1 s need 11 replicas (12 with what waits), not the 40 a burst left."""
    c = _cluster(replicas_max=50, scale_down_after_s=60.0)
    for n in range(1, 5):
        c.node(f"m{n}", gpus=("RTX4090",) * 10)
    for r in range(40):
        c.replica(f"r{r}", f"m{r % 4 + 1}", "ws")
    c.fold(ReplicasScaled("ws", 40, "a burst"), t=0)
    scaler = Autoscaler()
    decided: list[ReplicasScaled] = []
    for second in range(0, 80):
        for n in range(1, 5):
            c.heartbeat(f"m{n}", second)
        _served(c, 10, took_s=1.0, t=second)
        c.fold(submitted(f"waiting-{second}", "ws"), t=second)  # one left for the next round
        decided += _decide(c, scaler, second + 0.5)
        for placed in dispatch_waiting(c.state, at(second + 0.6)):
            c.fold(completed(placed, took_s=1.0), t=second + 0.7)  # type: ignore[arg-type]
    assert [d.replicas for d in decided][:1] == [12]
    assert "11.0 task(s)/s x 1.00s" in decided[0].reason


def test_no_replica_is_added_per_tick_while_one_starts() -> None:
    c = _cluster(replicas_max=10)
    c.replica("d1", "n1", "ws")
    c.replica("d2", "n2", "ws", phase="starting")
    c.fold(ReplicasScaled("ws", 2, "test"), t=0)
    _served(c, 1, took_s=1.0, t=0)
    c.fold(submitted("late", "ws"), t=0)
    scaler = Autoscaler()
    # 5 s of delay, but d2 is coming: the need (one slot) is what counts, no +1 per tick.
    assert _decide(c, scaler, 5) == []
    c.fold(DeploymentStopped("d2", "n2", "ws", "gone"), t=6)
    assert [d.replicas for d in _decide(c, scaler, 6)] == [3]  # none starts: one more
