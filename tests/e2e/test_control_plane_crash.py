"""A control plane killed (SIGKILL) while a long task runs and after many quick ones
completed: once restarted, it calls the long task again (it was in flight: at-least-once)
and none of the completed ones. Calls are counted by the container itself (`/calls`)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.cluster import Cluster, cluster_env, sample_workspace, wait_for

QUICK = 60
SLOW_MS = 20_000
GUARD_S = 120
WORKSPACE = sample_workspace(
    name="crash", replicas={"min": 1, "max": 1}, concurrency=8, timeout_s=90
)


@pytest.fixture
def one_node(tmp_path: Path, kafka_bootstrap: str | None) -> Iterator[tuple[Cluster, str]]:
    cluster = Cluster(tmp_path, cluster_env(kafka_bootstrap))
    try:
        cluster.start_control_plane()
        cluster.start_node("alpha")
        created = httpx.post(
            f"{cluster.url}/v1/workspaces", json=WORKSPACE, headers=cluster.admin(), timeout=30
        )
        assert created.status_code == 201, created.text
        workspace_id = created.json()["workspace_id"]
        wait_for(
            lambda: any(d["state"] == "ready" for n in cluster.nodes() for d in n["deployments"]),
            90, "the replica to be ready",
        )  # fmt: skip
        yield cluster, workspace_id
    finally:
        cluster.stop()


def _kill_control_plane(cluster: Cluster) -> None:
    """SIGKILL every control plane process (the node agents live on), as if its host died."""
    agents = {agent.pid for agent in cluster.agents.values()}
    for process in cluster.processes:
        if process.pid not in agents and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: it and its children
            process.wait(timeout=10)


def _outcomes(cluster: Cluster) -> dict[str, list[dict[str, Any]]]:
    ended: dict[str, list[dict[str, Any]]] = {}
    for event in cluster.events():
        if event["type"] in ("TaskCompleted", "TaskFailed"):
            ended.setdefault(event["key"], []).append(event)
    return ended


def test_a_restarted_control_plane_calls_no_completed_task_again(
    one_node: tuple[Cluster, str],
) -> None:
    cluster, workspace_id = one_node
    auth = {"Authorization": f"Bearer {workspace_id}"}

    def submit(param_url: str) -> str:
        accepted = httpx.post(f"{cluster.url}/user/schedulingTask?paramUrl={param_url}",
                              json={"data": "{}"}, headers=auth, timeout=30)  # fmt: skip
        assert accepted.json()["result_code"] == 100, accepted.text
        return str(accepted.json()["taskID"])

    def calls() -> dict[str, int]:
        answer = httpx.post(f"{cluster.url}/user/calls", json={"data": "{}"}, headers=auth,
                            timeout=GUARD_S)  # fmt: skip
        assert answer.status_code == 200, answer.text
        return dict(orjson.loads(answer.json()["data"])["calls"])

    slow = submit(f"sleep?ms={SLOW_MS}")
    wait_for(lambda: calls().get(slow) == 1, GUARD_S, "the slow task at the container")
    quick = [submit("echo") for _ in range(QUICK)]
    wait_for(lambda: set(quick) <= set(_outcomes(cluster)), GUARD_S, "the quick tasks' outcomes")
    time.sleep(1.0)  # the dispatchers commit a few times a second
    assert slow not in _outcomes(cluster), "the slow task must still be running at the kill"

    _kill_control_plane(cluster)
    cluster.start_control_plane()

    done = wait_for(lambda: _outcomes(cluster).get(slow), GUARD_S, "the slow task's outcome")
    assert [e["type"] for e in done] == ["TaskCompleted"]
    counted = calls()
    assert counted[slow] == 2  # in flight at the crash: called again
    assert {t: counted.get(t) for t in quick if counted.get(t) != 1} == {}
    ended = _outcomes(cluster)
    assert all(len(ended[t]) == 1 for t in quick)
