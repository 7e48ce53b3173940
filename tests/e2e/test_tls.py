"""Transport security end to end: `ngpu up --demo` with NGPU_TLS_* serves HTTPS only, its
node agent reaches it trusting that certificate, and the dispatcher calls the agent's
proxy over HTTPS pinned to the certificate the node registered; an agent run with
--no-proxy-tls registers none and is called over plain HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.certs import certificate_sha256, write_self_signed
from tests.e2e.cluster import Cluster, cluster_env, sample_workspace, wait_for


def test_up_demo_over_tls_end_to_end(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls-cert.pem", tmp_path / "tls-key.pem"
    write_self_signed(cert, key, ("127.0.0.1",))
    env = cluster_env(NGPU_TLS_CERT_FILE=str(cert), NGPU_TLS_KEY_FILE=str(key))
    cluster = Cluster(tmp_path / "cluster", env, tls_ca=cert)
    cluster.data_dir.mkdir()
    try:
        workspace_id = cluster.start_demo()  # its agent registered over https
        (node,) = cluster.nodes()
        assert node["proxy_cert_sha256"] == certificate_sha256(node["proxy_cert"])
        bearer = {"Authorization": f"Bearer {workspace_id}"}
        answer = httpx.post(f"{cluster.url}/user/img2img", json={"data": "{}"}, headers=bearer,
                            timeout=60, verify=cluster.verify)  # fmt: skip
        assert answer.status_code == 200, answer.text
        dispatched = [e["data"] for e in cluster.events() if e["type"] == "TaskDispatched"]
        assert [d["proxy_cert_sha256"] for d in dispatched] == [node["proxy_cert_sha256"]]
        with pytest.raises(httpx.TransportError):  # no plain HTTP beside it
            httpx.get(f"http://127.0.0.1:{cluster.port}/healthz", timeout=5)
    finally:
        cluster.stop()


def test_a_node_without_proxy_tls_is_called_over_http(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, cluster_env())
    cluster.start_control_plane()
    try:
        cluster.start_node("plain", "RTX4090:1", "", "", "--no-proxy-tls")
        workspace = sample_workspace(replicas={"min": 1, "max": 1})
        created = httpx.post(f"{cluster.url}/v1/workspaces", json=workspace,
                             headers=cluster.admin(), timeout=30)  # fmt: skip
        assert created.status_code == 201, created.text
        workspace_id = created.json()["workspace_id"]

        def ready() -> dict[str, object] | None:
            node = cluster.node_named("plain")
            states = [d["state"] for d in node["deployments"]] if node else []
            return node if "ready" in states else None

        node = wait_for(ready, 90, "the replica on the plain node")
        assert (node["proxy_cert"], node["proxy_cert_sha256"]) == ("", "")
        bearer = {"Authorization": f"Bearer {workspace_id}"}
        answer = httpx.post(f"{cluster.url}/user/img2img", json={"data": "{}"}, headers=bearer,
                            timeout=60)  # fmt: skip
        assert answer.status_code == 200, answer.text
        dispatched = [e["data"] for e in cluster.events() if e["type"] == "TaskDispatched"]
        assert [d["proxy_cert_sha256"] for d in dispatched] == [""]
    finally:
        cluster.stop()
