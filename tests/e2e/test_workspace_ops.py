"""Issue 15 end to end, real processes: a workspace's replicas' output read through the
gateway from the node agents that keep it, and a private image's registry credentials
handed to the node that runs the workspace and to no other."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.e2e.cluster import Cluster, cluster_env, sample_workspace, wait_for

PASSWORD = "e2e-registry-password-7d1f"
AUTH = {"server": "registry.example.com", "username": "puller", "password": PASSWORD}


def _ready_on(cluster: Cluster, workspace_id: str, names: tuple[str, ...]) -> str | None:
    """The name of the node a ready replica of the workspace runs on."""
    for name in names:
        node = cluster.node_named(name)
        for d in (node or {}).get("deployments", []):
            if d["workspace_id"] == workspace_id and d["state"] == "ready":
                return name
    return None


def test_a_workspaces_logs_are_read_from_its_nodes_and_followed(cluster: Cluster) -> None:
    cluster.start_node("alpha")
    created = httpx.post(f"{cluster.url}/v1/workspaces", headers=cluster.admin(), timeout=30,
                         json=sample_workspace(replicas={"min": 1, "max": 1}))  # fmt: skip
    assert created.status_code == 201, created.text
    workspace_id = created.json()["workspace_id"]
    wait_for(lambda: _ready_on(cluster, workspace_id, ("alpha",)), 90, "a ready replica")
    bearer = {"Authorization": f"Bearer {workspace_id}"}
    url = f"{cluster.url}/v1/workspaces/{workspace_id}/logs"

    def printed(marker: str) -> dict[str, Any] | None:
        answer = httpx.get(url, params={"tail": 200}, headers=cluster.admin(), timeout=30)
        assert answer.status_code == 200, answer.text
        [replica] = answer.json()["replicas"]
        return replica if any(marker in line for line in replica["lines"]) else None

    served = httpx.post(f"{cluster.url}/user/echo", json={"data": "{}"}, headers=bearer,
                        timeout=60)  # fmt: skip
    assert served.status_code == 200, served.text
    replica = wait_for(lambda: printed("/echo"), 30, "the request's line in the replica's log")
    assert replica["error"] is None and replica["state"] == "ready"
    assert any("sampleapp listening" in line for line in replica["lines"])

    params = {"tail": 1, "follow": "true", "max_s": 120}
    with httpx.stream("GET", url, params=params, headers=cluster.admin(), timeout=60) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert "line" in json.loads(next(lines))
        httpx.post(f"{cluster.url}/user/whoami", json={"data": "{}"}, headers=bearer, timeout=60)
        followed = next(json.loads(x) for x in lines if "/whoami" in x)
    assert followed["deployment_id"] == replica["deployment_id"]
    # The lines never went through the event log.
    assert all("/whoami" not in json.dumps(e) for e in cluster.events("ngpu.nodes"))


@pytest.fixture
def sealing_cluster(tmp_path: Path, kafka_bootstrap: str | None) -> Iterator[Cluster]:
    env = cluster_env(kafka_bootstrap, NGPU_SECRETS_KEY=Fernet.generate_key().decode())
    instance = Cluster(tmp_path, env)
    instance.start_control_plane()
    try:
        yield instance
    finally:
        instance.stop()


def _node_token(cluster: Cluster, name: str) -> tuple[str, str]:
    saved = json.loads((cluster.data_dir / name / "registration.json").read_text())
    return saved["registration"]["node_id"], saved["registration"]["token"]


def test_registry_credentials_reach_the_node_running_the_workspace_only(
    sealing_cluster: Cluster,
) -> None:
    cluster = sealing_cluster
    for name in ("alpha", "beta"):
        cluster.start_node(name)
    wait_for(lambda: len(cluster.nodes()) == 2, 60, "two nodes to register")
    body = sample_workspace(replicas={"min": 1, "max": 1}, registry_auth=AUTH)
    created = httpx.post(f"{cluster.url}/v1/workspaces", json=body, headers=cluster.admin(),
                         timeout=30)  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.json()["registry_auth"] == {"server": AUTH["server"], "username": "puller"}
    workspace_id = created.json()["workspace_id"]
    runs_it = wait_for(lambda: _ready_on(cluster, workspace_id, ("alpha", "beta")), 90,
                       "a ready replica")  # fmt: skip
    idle = "beta" if runs_it == "alpha" else "alpha"
    [deployment] = [d for d in (cluster.node_named(runs_it) or {})["deployments"]
                    if d["workspace_id"] == workspace_id]  # fmt: skip

    node_id, token = _node_token(cluster, runs_it)
    path = f"/v1/nodes/{{}}/deployments/{deployment['deployment_id']}/registry-auth"
    mine = httpx.get(cluster.url + path.format(node_id), timeout=10,
                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert mine.status_code == 200 and mine.json() == AUTH

    other_id, other_token = _node_token(cluster, idle)
    theirs = httpx.get(cluster.url + path.format(other_id), timeout=10,
                       headers={"Authorization": f"Bearer {other_token}"})  # fmt: skip
    assert theirs.status_code == 404 and PASSWORD not in theirs.text
    borrowed = httpx.get(cluster.url + path.format(node_id), timeout=10,
                         headers={"Authorization": f"Bearer {other_token}"})  # fmt: skip
    assert borrowed.status_code == 401

    # Neither the log (as any reader decodes it) nor any file of the gateway holds it.
    assert all(PASSWORD not in json.dumps(e) for e in cluster.events("ngpu.workspaces"))
    files = [p for p in cluster.data_dir.rglob("*") if p.is_file()]
    assert [p for p in files if PASSWORD.encode() in p.read_bytes()] == []
