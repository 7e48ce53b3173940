"""Tasks end when nothing is left to try, not at their TTL: a timed-out attempt is terminal
unless the workspace opts in (`retry_on_timeout`), and a task every replica of whose
workspace is on a node that already failed it ends at once with its last failure.

The TTL is five minutes here and every wait below is a hang guard of a minute: a task
that waited for its TTL fails the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster_env, sample_workspace, wait_for

GUARD_S = 60


@pytest.fixture
def two_workspaces(
    tmp_path: Path, kafka_bootstrap: str | None
) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """Two nodes of two GPUs; `slow` (a 2 s timeout, one replica) and `crashy` (a replica
    on each node), with three attempts per task and a 300 s TTL."""
    env = cluster_env(kafka_bootstrap, NGPU_TASK_MAX_ATTEMPTS="3", NGPU_TASK_TTL_S="300")
    cluster = Cluster(tmp_path, env)
    try:
        cluster.start_control_plane()
        cluster.start_node("alpha", gpu="RTX4090:2")
        cluster.start_node("beta", gpu="RTX4090:2")
        # Both nodes first, so that crashy's replicas are spread over them.
        wait_for(lambda: len(cluster.nodes()) == 2, 60, "both nodes registered")
        ids = {}
        for name, replicas, timeout_s in (("slow", 1, 2), ("crashy", 2, 30)):
            body = sample_workspace(name=name, timeout_s=timeout_s,
                                    replicas={"min": replicas, "max": replicas})  # fmt: skip
            created = httpx.post(f"{cluster.url}/v1/workspaces", json=body,
                                 headers=cluster.admin(), timeout=30)  # fmt: skip
            assert created.status_code == 201, created.text
            ids[name] = created.json()["workspace_id"]

        def ready() -> bool:
            states = [d["state"] for n in cluster.nodes() for d in n["deployments"]]
            return states.count("ready") == 3

        wait_for(ready, 90, "three replicas ready")
        crashy_nodes = {n["node_id"] for n in cluster.nodes() for d in n["deployments"]
                        if d["workspace_id"] == ids["crashy"]}  # fmt: skip
        assert len(crashy_nodes) == 2
        yield cluster, ids
    finally:
        cluster.stop()


def _auth(workspace_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {workspace_id}"}


def _events_of(cluster: Cluster, task_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in cluster.events() if e["key"] == task_id and e["type"] == kind]


def test_a_timed_out_sync_call_answers_504_without_a_retry(
    two_workspaces: tuple[Cluster, dict[str, str]],
) -> None:
    cluster, ids = two_workspaces
    answer = httpx.post(f"{cluster.url}/user/sleep", json={"data": {"ms": 8000}},
                        headers=_auth(ids["slow"]), timeout=GUARD_S)  # fmt: skip
    assert answer.status_code == 504, answer.text
    body = answer.json()
    assert body["result_code"] == 504
    task_id = body["taskID"]
    assert "2s" in body["msg"]
    (failure,) = _events_of(cluster, task_id, "TaskFailed")
    assert (failure["data"]["code"], failure["data"]["retryable"]) == ("timeout", False)
    assert len(_events_of(cluster, task_id, "TaskDispatched")) == 1
    assert _events_of(cluster, task_id, "TaskRetried") == []


def test_retry_on_timeout_retries_while_a_node_is_left(
    two_workspaces: tuple[Cluster, dict[str, str]],
) -> None:
    cluster, ids = two_workspaces
    patched = httpx.patch(f"{cluster.url}/v1/workspaces/{ids['slow']}",
                          json={"retry_on_timeout": True}, headers=cluster.admin())  # fmt: skip
    assert patched.status_code == 200 and patched.json()["retry_on_timeout"] is True
    answer = httpx.post(f"{cluster.url}/user/sleep", json={"data": {"ms": 8000}},
                        headers=_auth(ids["slow"]), timeout=GUARD_S)  # fmt: skip
    assert answer.status_code == 504, answer.text
    task_id = answer.json()["taskID"]
    # Retryable at the dispatcher; its only replica's node is excluded, so the scheduler
    # ends it with that failure at once instead of queueing it until its TTL.
    failures = _events_of(cluster, task_id, "TaskFailed")
    assert [(f["data"]["code"], f["data"]["retryable"]) for f in failures] == [
        ("timeout", True),
        ("timeout", False),
    ]
    assert "no other node" in failures[-1]["data"]["reason"]


def test_a_task_every_replica_failed_ends_before_its_attempts_run_out(
    two_workspaces: tuple[Cluster, dict[str, str]],
) -> None:
    cluster, ids = two_workspaces
    auth = _auth(ids["crashy"])
    # The sample app's /exit dies without answering: every attempt fails in transport.
    accepted = httpx.post(f"{cluster.url}/user/schedulingTask?paramUrl=exit?code=3",
                          json={"data": "{}"}, headers=auth)  # fmt: skip
    task_id = accepted.json()["taskID"]

    def ended() -> dict[str, Any] | None:
        body = httpx.get(f"{cluster.url}/user/queryTask?taskID={task_id}", headers=auth).json()
        return body if body["result_code"] != 100 else None

    done = wait_for(ended, GUARD_S, "the task to end")
    assert done["result_code"] == 502, done
    failures = _events_of(cluster, task_id, "TaskFailed")
    assert [f["data"]["retryable"] for f in failures] == [True, True, False]
    assert len({f["data"]["node_id"] for f in failures}) == 2
    assert max(f["data"]["attempt"] for f in failures) == 2  # of 3 allowed
    assert _events_of(cluster, task_id, "TaskExpired") == []
