"""Tasks outlive their nodes: a node killed mid-request hands the task to another node;
a task that fails everywhere ends failed with a reason instead of hanging."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster_env, sample_workspace, wait_for

WORKSPACE = sample_workspace()


@pytest.fixture
def two_nodes(tmp_path: Path, kafka_bootstrap: str | None) -> Iterator[tuple[Cluster, str]]:
    env = cluster_env(kafka_bootstrap, NGPU_TASK_MAX_ATTEMPTS="2", NGPU_TASK_TTL_S="30")
    cluster = Cluster(tmp_path, env)
    try:
        cluster.start_control_plane()
        cluster.start_node("alpha")
        cluster.start_node("beta")
        created = httpx.post(
            f"{cluster.url}/v1/workspaces", json=WORKSPACE, headers=cluster.admin()
        )
        workspace_id = created.json()["workspace_id"]

        def ready() -> bool:
            states = [d["state"] for n in cluster.nodes() for d in n["deployments"]]
            return states.count("ready") == 2

        wait_for(ready, 90, "both replicas ready")
        yield cluster, workspace_id
    finally:
        cluster.stop()


def _events_of(cluster: Cluster, task_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in cluster.events() if e["key"] == task_id and e["type"] == kind]


def _node_name(cluster: Cluster, node_id: str) -> str:
    for name in ("alpha", "beta"):
        node = cluster.node_named(name)
        if node is not None and node["node_id"] == node_id:
            return name
    raise AssertionError(f"no node {node_id}")


def test_a_task_survives_the_death_of_its_node(two_nodes: tuple[Cluster, str]) -> None:
    cluster, workspace_id = two_nodes
    auth = {"Authorization": f"Bearer {workspace_id}"}
    accepted = httpx.post(f"{cluster.url}/user/schedulingTask?paramUrl=sleep?ms=3000",
                          json={"data": "{}"}, headers=auth)  # fmt: skip
    task_id = accepted.json()["taskID"]
    first = wait_for(lambda: _events_of(cluster, task_id, "TaskDispatched"), 30, "a dispatch")
    victim = _node_name(cluster, first[0]["data"]["node_id"])
    cluster.kill_node(victim)

    done = wait_for(
        lambda: (b := httpx.get(f"{cluster.url}/user/queryTask?taskID={task_id}",
                                headers=auth).json())["result_code"] != 100 and b,
        60, "the task to end",
    )  # fmt: skip
    assert done["result_code"] == 200, done
    (completed,) = _events_of(cluster, task_id, "TaskCompleted")
    assert completed["data"]["attempt"] == 2
    assert completed["data"]["node_id"] != first[0]["data"]["node_id"]
    (failed,) = _events_of(cluster, task_id, "TaskFailed")
    assert failed["data"]["retryable"] is True
    assert failed["data"]["code"] in ("node_error", "node_refused")
    (retried,) = _events_of(cluster, task_id, "TaskRetried")
    assert retried["data"]["excluded_node_ids"] == [first[0]["data"]["node_id"]]


def test_a_task_failing_on_every_node_ends_failed(two_nodes: tuple[Cluster, str]) -> None:
    cluster, workspace_id = two_nodes
    auth = {"Authorization": f"Bearer {workspace_id}"}
    # The sample app's /exit kills it without answering: every attempt fails in transport.
    accepted = httpx.post(f"{cluster.url}/user/schedulingTask?paramUrl=exit?code=3",
                          json={"data": "{}"}, headers=auth)  # fmt: skip
    task_id = accepted.json()["taskID"]
    done = wait_for(
        lambda: (b := httpx.get(f"{cluster.url}/user/queryTask?taskID={task_id}",
                                headers=auth).json())["result_code"] != 100 and b,
        60, "the task to end",
    )  # fmt: skip
    assert done["result_code"] == 502
    assert "node" in done["msg"]
    failures = _events_of(cluster, task_id, "TaskFailed")
    assert [f["data"]["retryable"] for f in failures] == [True, False]
    assert len({f["data"]["node_id"] for f in failures}) == 2
    sync = httpx.post(f"{cluster.url}/user/exit?code=3", json={"data": "{}"}, headers=auth,
                      timeout=90)  # fmt: skip
    assert sync.status_code == 502 and sync.json()["result_code"] == 502
