"""Rolling updates in the replica plan: a new revision starts one replica at a time beside
the old ones, each that is ready retires an old one (drained when busy, never sent a task
again), and a revision whose replicas keep failing is rolled back while the old replicas
serve throughout."""

from __future__ import annotations

from events.base import Event
from events.deployment import (
    DeploymentDraining,
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    DeploymentStarting,
    DeploymentStopped,
)
from events.workspace import RolloutFailed, WorkspaceUpdated
from services.scheduler import dispatch_waiting, plan_replicas
from services.scheduler.config import SchedulerSettings
from services.scheduler.replicas import ROLLOUT_MAX_FAILURES
from tests.services.scheduler.builders import PORT, Cluster, at, completed, dispatched, submitted

SETTINGS = SchedulerSettings(heartbeat_window_s=10**9, lost_after_s=10**9)


def _cluster() -> Cluster:
    c = Cluster()
    for n in ("n1", "n2", "n3", "n4"):
        c.node(n)
    c.workspace("ws", replicas_min=2, replicas_max=2)
    c.replica("old1", "n1", "ws")
    c.replica("old2", "n2", "ws")
    return c


def _update(c: Cluster, revision: int = 2, image: str = "img:2", t: float = 1) -> None:
    c.fold(WorkspaceUpdated(
        workspace_id="ws", env={"V": str(revision)}, replicas_min=2, replicas_max=2,
        timeout_s=60.0, revision=revision, image=image, command=("serve",),
        gpu_type="RTX4090", gpu_count=1, ports=(PORT,), health_path="/health", concurrency=1,
    ), t=t)  # fmt: skip


def _plan(c: Cluster, t: float) -> list[Event]:
    events = plan_replicas(c.state, at(t), SETTINGS)
    c.fold(*events, t=t)
    return events


def _ready(c: Cluster, requested: DeploymentRequested, t: float) -> None:
    ids = {"deployment_id": requested.deployment_id, "node_id": requested.node_id,
           "workspace_id": "ws"}  # fmt: skip
    c.fold(DeploymentStarting(**ids), DeploymentReady(**ids, host_ports={str(PORT): 31000}), t=t)


def _kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(type(e).__name__, getattr(e, "deployment_id", "")) for e in events]


def test_a_new_revision_rolls_out_one_replica_at_a_time_draining_busy_ones() -> None:
    c = _cluster()
    c.fold(submitted("busy", "ws"), dispatched("busy", "ws", "n1", "old1"), t=0)
    _update(c)
    (first,) = _plan(c, 2)  # a surge of one; no old replica stops yet
    assert isinstance(first, DeploymentRequested) and first.revision == 2
    assert first.image == "img:2" and first.env == {"V": "2"}
    assert _plan(c, 3) == []  # one new replica starting at a time
    _ready(c, first, 4)
    events = _plan(c, 4)
    # The idle old replica stops; the next new one starts.
    assert [type(e) for e in events] == [DeploymentStopped, DeploymentRequested]
    assert events[0].deployment_id == "old2"  # type: ignore[attr-defined]
    second = events[1]
    assert isinstance(second, DeploymentRequested)
    _ready(c, second, 5)
    (draining,) = _plan(c, 5)  # the busy old replica drains
    assert isinstance(draining, DeploymentDraining) and draining.deployment_id == "old1"
    assert "replaced by revision 2" in draining.reason
    c.fold(submitted("next", "ws"), t=6)
    (placed,) = [e for e in dispatch_waiting(c.state, at(6)) if hasattr(e, "deployment_id")]
    assert placed.deployment_id in {first.deployment_id, second.deployment_id}  # type: ignore[attr-defined]
    assert placed.revision == 2  # type: ignore[attr-defined]
    assert _plan(c, 7) == []  # old1 still runs "busy"
    c.fold(completed(dispatched("busy", "ws", "n1", "old1")), t=8)
    assert _kinds(_plan(c, 8)) == [("DeploymentStopped", "old1")]
    assert {d.revision for d in c.state.deployments.values()} == {2}
    assert _plan(c, 9) == []


def test_a_revision_that_keeps_failing_is_rolled_back_and_the_old_replicas_serve() -> None:
    c = _cluster()
    _update(c, image="broken:2")
    for attempt in range(ROLLOUT_MAX_FAILURES):
        (new,) = _plan(c, 2 + attempt)
        assert isinstance(new, DeploymentRequested) and new.image == "broken:2"
        c.fold(DeploymentFailed(deployment_id=new.deployment_id, node_id=new.node_id,
                                workspace_id="ws", reason="exited"), t=2 + attempt)  # fmt: skip
    assert c.state.deployments.keys() == {"old1", "old2"}
    (failed,) = _plan(c, 10)
    assert isinstance(failed, RolloutFailed) and failed.revision == 2
    spec = c.state.workspaces["ws"]
    assert (spec.revision, spec.image, dict(spec.env)) == (1, "img:1", {})
    assert _plan(c, 11) == []
    assert c.state.ready_deployment_ids("ws") == ("old1", "old2")
    assert c.rebuilt().workspaces["ws"].revision == 1
    # A later update is a new revision again, rolled out afresh.
    _update(c, revision=3, image="img:3", t=12)
    (again,) = _plan(c, 12)
    assert isinstance(again, DeploymentRequested) and again.revision == 3


def test_a_settings_update_without_a_new_revision_changes_no_replica() -> None:
    c = _cluster()
    c.fold(WorkspaceUpdated(workspace_id="ws", env={}, replicas_min=2, replicas_max=2,
                            timeout_s=30.0), t=1)  # fmt: skip
    assert c.state.workspaces["ws"].revision == 1
    assert _plan(c, 2) == []
