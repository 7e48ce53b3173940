"""Replicas placed on real node agents (process runtime) and re-placed when a node dies."""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpx

from tests.e2e.cluster import Cluster, sample_workspace, wait_for

WORKSPACE = sample_workspace()


def _ready(node: dict[str, Any] | None, workspace_id: str) -> dict[str, Any] | None:
    if node is None:
        return None
    for deployment in node["deployments"]:
        if deployment["workspace_id"] == workspace_id and deployment["state"] == "ready":
            return dict(deployment)
    return None


def _serves_only_the_gateway(node: dict[str, Any], deployment: dict[str, Any]) -> None:
    """The registered port is the agent's proxy, serving HTTPS with the certificate the
    node registered (trusted here as the only CA): an unsigned call is refused there."""
    port = deployment["ports"]["8080"]
    pinned = ssl.create_default_context(cadata=node["proxy_cert"])
    pinned.check_hostname = False
    answer = httpx.get(f"https://127.0.0.1:{port}/health", timeout=5, verify=pinned)
    assert answer.status_code == 401


def _served_through_the_gateway(cluster: Cluster, workspace_id: str) -> None:
    bearer = {"Authorization": f"Bearer {workspace_id}"}
    answer = httpx.post(f"{cluster.url}/user/img2img", json={"data": "{}"}, headers=bearer,
                        timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text


def test_replicas_spread_then_move_off_a_dead_node(cluster: Cluster) -> None:
    cluster.start_node("alpha")
    cluster.start_node("beta")
    wait_for(lambda: len(cluster.nodes()) == 2, 60, "two nodes to register")
    created = httpx.post(f"{cluster.url}/v1/workspaces", json=WORKSPACE, headers=cluster.admin())
    assert created.status_code == 201, created.text
    workspace_id = created.json()["workspace_id"]

    def both_ready() -> list[dict[str, Any]] | None:
        ready = [_ready(cluster.node_named(n), workspace_id) for n in ("alpha", "beta")]
        return ready if all(ready) else None  # type: ignore[return-value]

    deployments = wait_for(both_ready, 90, "a ready replica on each of the two nodes")
    for name, deployment in zip(("alpha", "beta"), deployments, strict=True):
        _serves_only_the_gateway(cluster.node_named(name) or {}, deployment)
    _served_through_the_gateway(cluster, workspace_id)

    cluster.start_node("gamma")
    wait_for(lambda: cluster.node_named("gamma"), 60, "the third node to register")
    assert cluster.node_named("gamma")["deployments"] == []  # type: ignore[index]

    killed_at = time.monotonic()
    cluster.kill_node("alpha")
    moved = wait_for(
        lambda: _ready(cluster.node_named("gamma"), workspace_id), 90, "the replica on gamma"
    )
    elapsed = time.monotonic() - killed_at
    print(f"replica re-placed and ready {elapsed:.1f}s after the node died (lost after 3s)")
    alpha = wait_for(
        lambda: (n := cluster.node_named("alpha")) and not n["healthy"] and n, 30, "alpha lost"
    )
    assert [d["state"] for d in alpha["deployments"]] == ["stopped"]
    assert alpha["deployments"][0]["reason"].startswith("node lost")
    assert _ready(cluster.node_named("beta"), workspace_id) is not None
    _serves_only_the_gateway(cluster.node_named("gamma") or {}, moved)
    _served_through_the_gateway(cluster, workspace_id)
