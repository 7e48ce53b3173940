"""Elastic capacity end to end: real control plane processes (embedded, and on Kafka with
the scheduler and dispatchers in their own), one real node agent with four GPUs running
the sample app, workspaces that scale on queue delay, scale to zero and back, and roll a
new revision out under load (and roll a broken one back) without failing a task.

Every wait is a hang guard; nothing is timed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster_env, sample_workspace, wait_for

GUARD_S = 90


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str | None
) -> Iterator[Cluster]:
    instance = Cluster(tmp_path_factory.mktemp("autoscale"), cluster_env(kafka_bootstrap))
    try:
        instance.start_control_plane()
        instance.start_node("gpu", gpu="RTX4090:4")
        wait_for(lambda: instance.node_named("gpu"), 30, "the node to register")
        yield instance
    finally:
        instance.stop()


def _create(cluster: Cluster, name: str, **fields: Any) -> str:
    body = sample_workspace(name=name, timeout_s=60, **fields)
    created = httpx.post(f"{cluster.url}/v1/workspaces", json=body, headers=cluster.admin(),
                         timeout=30)  # fmt: skip
    assert created.status_code == 201, created.text
    return str(created.json()["workspace_id"])


def _workspace(cluster: Cluster, workspace_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{cluster.url}/v1/workspaces/{workspace_id}", headers=cluster.admin(),
                       timeout=30)  # fmt: skip
    answer.raise_for_status()
    return dict(answer.json())


def _replicas(cluster: Cluster, workspace_id: str, *states: str) -> list[dict[str, Any]]:
    """The workspace's replicas in `states` (default: any state but failed and stopped)."""
    wanted = states or ("requested", "starting", "ready", "draining")
    return [d for n in cluster.nodes() for d in n["deployments"]
            if d["workspace_id"] == workspace_id and d["state"] in wanted]  # fmt: skip


def _count_is(cluster: Cluster, workspace_id: str, count: int) -> bool:
    ready = _replicas(cluster, workspace_id, "ready")
    return len(ready) == count == len(_replicas(cluster, workspace_id))


def _post(cluster: Cluster, workspace_id: str, path: str, data: Any = None) -> httpx.Response:
    return httpx.post(f"{cluster.url}{path}", json={"data": data or ""}, timeout=120,
                      headers={"Authorization": f"Bearer {workspace_id}"})  # fmt: skip


def test_queue_delay_scales_up_and_idleness_scales_down(cluster: Cluster) -> None:
    scaling = {"metric": "queue_delay", "target": 1, "scale_down_after_s": 3}
    ws = _create(cluster, "elastic", replicas={"min": 1, "max": 3}, scaling=scaling)
    wait_for(lambda: _count_is(cluster, ws, 1), GUARD_S, "one replica")
    accepted = [_post(cluster, ws, "/user/schedulingTask?paramUrl=sleep?ms=4000") for _ in range(6)]
    task_ids = [a.json()["taskID"] for a in accepted]
    wait_for(lambda: len(_replicas(cluster, ws, "ready")) == 3, GUARD_S, "three replicas")
    last = _workspace(cluster, ws)["scaling"]["last"]
    assert last["replicas"] == 3 and "queue delay" in last["reason"]

    def ended() -> bool:
        auth = {"Authorization": f"Bearer {ws}"}
        url = f"{cluster.url}/user/queryTask?taskID="
        answers = [httpx.get(url + t, headers=auth, timeout=30).json() for t in task_ids]
        assert all(a["result_code"] in (100, 200) for a in answers), answers
        return all(a["result_code"] == 200 for a in answers)

    wait_for(ended, GUARD_S, "every task to complete")
    wait_for(lambda: _count_is(cluster, ws, 1), GUARD_S, "back to one replica")
    last = _workspace(cluster, ws)["scaling"]["last"]
    assert last["replicas"] == 1 and "within target" in last["reason"]


def test_scale_to_zero_and_a_call_that_wakes_it(cluster: Cluster) -> None:
    ws = _create(cluster, "sleepy", replicas={"min": 0, "max": 1},
                 scaling={"scale_down_after_s": 2})  # fmt: skip
    assert _replicas(cluster, ws) == []  # min 0: nothing runs until a task arrives
    for wake in ("first", "again"):
        # A sync call with no replica waits for one (a cold start), and is answered.
        answer = _post(cluster, ws, "/user/img2img", {"prompt": wake})
        assert answer.status_code == 200, answer.text
        last = _workspace(cluster, ws)["scaling"]["last"]
        assert last["replicas"] == 1 and "no replica" in last["reason"]
        wait_for(lambda: not _replicas(cluster, ws), GUARD_S, "zero replicas once idle")
        assert _workspace(cluster, ws)["scaling"]["last"]["replicas"] == 0


class Load:
    """Sync calls of `/sleep` from a few threads until stopped; every answer kept."""

    def __init__(self, cluster: Cluster, workspace_id: str, workers: int = 3) -> None:
        self.answers: list[httpx.Response] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(cluster, workspace_id))
                         for _ in range(workers)]  # fmt: skip
        for thread in self._threads:
            thread.start()

    def _run(self, cluster: Cluster, workspace_id: str) -> None:
        while not self._stop.is_set():
            self.answers.append(_post(cluster, workspace_id, "/user/sleep?ms=700", {"ms": 700}))

    def stop(self) -> list[httpx.Response]:
        self._stop.set()
        for thread in self._threads:
            thread.join(GUARD_S)
        return self.answers


def test_a_rolling_update_under_load_fails_no_task_and_a_broken_one_rolls_back(
    cluster: Cluster,
) -> None:
    ws = _create(cluster, "rolling", replicas={"min": 2, "max": 2}, concurrency=2)
    wait_for(lambda: _count_is(cluster, ws, 2), GUARD_S, "two replicas")
    load = Load(cluster, ws)
    try:
        wait_for(lambda: len(load.answers) >= 3, GUARD_S, "the load to run")
        patched = httpx.patch(f"{cluster.url}/v1/workspaces/{ws}", json={"env": {"REV": "2"}},
                              headers=cluster.admin(), timeout=30)  # fmt: skip
        assert patched.status_code == 200, patched.text
        assert patched.json()["revision"] == 2 and patched.json()["workspace_id"] == ws

        def rolled() -> bool:
            live = _replicas(cluster, ws)
            return len(live) == 2 and all(
                d["revision"] == 2 and d["state"] == "ready" for d in live
            )

        wait_for(rolled, GUARD_S, "revision 2 on every replica")
        served = len(load.answers)
        wait_for(lambda: len(load.answers) >= served + 3, GUARD_S, "calls served by revision 2")
        # A revision whose replicas cannot start is rolled back; revision 2 serves throughout.
        broken = httpx.patch(f"{cluster.url}/v1/workspaces/{ws}", json={"command": "exit 3"},
                             headers=cluster.admin(), timeout=30)  # fmt: skip
        assert broken.json()["revision"] == 3
        wait_for(lambda: (_workspace(cluster, ws)["rollout"] or {}).get("state") == "rolled_back",
                 GUARD_S, "the broken revision to be rolled back")  # fmt: skip
        view = _workspace(cluster, ws)
        assert view["revision"] == 2 and view["rollout"]["revision"] == 3
        assert view["command"] != ["sh", "-c", "exit 3"]
        assert all(d["revision"] == 2 for d in _replicas(cluster, ws, "ready"))
        served = len(load.answers)
        wait_for(lambda: len(load.answers) >= served + 3, GUARD_S, "calls after the rollback")
    finally:
        answers = load.stop()
    failed = [(a.status_code, a.text) for a in answers if a.status_code != 200]
    assert failed == [] and len(answers) > 10
    task_id = answers[-1].headers["X-NGPU-Task-ID"]
    history = httpx.get(f"{cluster.url}/v1/tasks/{task_id}", timeout=30,
                        headers={"Authorization": f"Bearer {ws}"})  # fmt: skip
    dispatched = [e for e in history.json()["events"] if e["type"] == "TaskDispatched"]
    assert dispatched and dispatched[-1]["revision"] == 2


def test_a_replica_no_node_can_take_is_explained(cluster: Cluster) -> None:
    ws = _create(
        cluster, "nowhere", gpu={"type": "H100", "count": 1}, replicas={"min": 1, "max": 1}
    )
    replicas = _workspace(cluster, ws)["replicas"]
    assert (replicas["wanted"], replicas["ready"], replicas["starting"]) == (1, 0, 0)
    assert replicas["unplaced"] == "no healthy node has a H100 GPU (1 healthy node(s))"
    # The node's four RTX 4090s: a fifth replica wanted finds them all taken.
    wide = _create(cluster, "wide", replicas={"min": 5, "max": 5})
    wait_for(lambda: len(_replicas(cluster, wide, "ready")) >= 1, GUARD_S, "a replica")
    unplaced = _workspace(cluster, wide)["replicas"].get("unplaced", "")
    assert "free RTX4090 GPU(s)" in unplaced and "all taken" in unplaced
