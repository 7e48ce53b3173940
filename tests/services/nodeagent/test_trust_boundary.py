"""Issue 13: node providers are strangers. A real agent (process runtime) against a real
control plane; everything the node can observe is collected and searched for the
customer's credentials; the container is reachable only through the agent's proxy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from events import DeploymentRequested, GpuInfo, TaskCompleted, TaskDispatched
from services.bus import publish_events
from services.callsign import deployment_secret, sign
from services.certs import proxy_certificate
from services.dispatcher.call import CallPolicy, call_node
from services.nodeagent.agent import AgentIdentity, NodeAgent
from services.nodeagent.control import ControlPlaneClient
from services.nodeagent.runtimes import ProcessRuntime, StatusCallback, container_spec
from tests.services.ingress.conftest import JOIN, ControlPlane, control_plane  # noqa: F401
from tests.services.nodeagent.helpers import DEADLINE_S, SAMPLEAPP, quick_config

WORKSPACE: dict[str, Any] = {
    "name": "secret-model",
    "image": "ngpu/sampleapp:latest",
    "command": list(SAMPLEAPP),
    "env": {"MODEL": "sd15"},
    "gpu": {"type": "RTX4090", "count": 1},
    "ports": [8080],
}


@dataclass
class Node:
    agent: NodeAgent
    work_dir: Path
    workspace_id: str
    userkey: str
    deployment_id: str
    ready_port: int


async def _wait(predicate: Any) -> Any:
    async with asyncio.timeout(DEADLINE_S):
        while not (value := predicate()):  # noqa: ASYNC110 - polls another task's state
            await asyncio.sleep(0.05)
        return value


@pytest.fixture
async def node(
    control_plane: ControlPlane,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Node]:
    """A node whose proxies serve plain HTTP, or HTTPS when parametrized with True."""
    caplog.set_level(logging.DEBUG)
    cp = control_plane
    created = await cp.http.post("/v1/workspaces", json=WORKSPACE, headers=cp.admin())
    assert created.status_code == 201, created.text
    workspace = created.json()
    client = ControlPlaneClient(cp.url, JOIN)
    identity = AgentIdentity("0x" + "ab" * 20, "127.0.0.1", (GpuInfo("RTX4090", 24564),))

    def build(on_status: StatusCallback) -> ProcessRuntime:
        return ProcessRuntime(quick_config(tmp_path), on_status)

    certificate = proxy_certificate() if getattr(request, "param", False) else None
    agent = NodeAgent(
        client, identity, build, poll_wait_s=0.5, retry_s=0.1, certificate=certificate
    )
    running = asyncio.create_task(agent.run())
    registration = await _wait(lambda: agent.registration)
    deployment_id = "dep-trust-1"
    records = await publish_events(cp.bus, [DeploymentRequested(
        deployment_id=deployment_id, node_id=registration.node_id,
        workspace_id=workspace["workspace_id"], image=WORKSPACE["image"],
        command=SAMPLEAPP, ports=(8080,), gpu_type="RTX4090", gpu_count=1,
        env=dict(WORKSPACE["env"]),
    )])  # fmt: skip
    await cp.context.follower.wait_for(records)
    directory = cp.context.follower.directory

    def ready_port() -> int | None:
        view = directory.nodes[registration.node_id].deployments[deployment_id]
        return view.host_ports.get("8080") if view.state == "ready" else None

    port = await _wait(ready_port)
    try:
        yield Node(
            agent, tmp_path, workspace["workspace_id"], workspace["userkey"], deployment_id, port
        )
    finally:
        agent.stop()
        await asyncio.wait_for(running, DEADLINE_S)
        await client.aclose()


def _children_environ() -> list[str]:
    """The environment of every child process of this test process (the runtime's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid():
                found.append((entry / "environ").read_bytes().decode(errors="replace"))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
async def test_a_node_sees_deployments_never_customers(
    node: Node,
    control_plane: ControlPlane,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    registration = node.agent.client.registration
    assert registration is not None
    assignments = await control_plane.http.get(
        f"/v1/nodes/{registration.node_id}/assignments",
        headers={"Authorization": f"Bearer {registration.token}"},
    )
    assert assignments.status_code == 200
    assert [d["deployment_id"] for d in assignments.json()["deployments"]] == [node.deployment_id]
    parsed = await node.agent.client.assignments()
    environments = _children_environ()
    assert environments, "the deployment's process was not found"
    seen = {
        "assignment JSON": assignments.text,
        "assignments as parsed": repr(parsed),
        "child environment": "\n".join(environments),
        "docker create call": repr(container_spec(parsed.deployments[0], None, {"8080": 41000})),
        "runtime logs": "\n".join(p.read_text() for p in node.work_dir.rglob("*.log")),
        "agent log": caplog.text,
        "handles": repr(node.agent.runtime.handles()),
    }
    assert "sd15" in seen["child environment"]  # the workspace's own env does reach it
    for what, text in seen.items():
        assert node.workspace_id not in text, f"the Workspace ID leaks through the {what}"
        assert node.userkey not in text, f"the userkey leaks through the {what}"
    # The control plane still knows whose it is.
    listing = (await control_plane.http.get("/v1/nodes", headers=control_plane.admin())).json()
    (entry,) = listing["nodes"][0]["deployments"]
    assert entry["workspace_id"] == node.workspace_id


async def test_the_registered_port_is_the_proxy_not_the_container(
    node: Node,
    control_plane: ControlPlane,  # noqa: F811
) -> None:
    (handle,) = node.agent.runtime.handles()
    container_port = handle.host_ports["8080"]
    assert node.ready_port != container_port
    secret = deployment_secret(control_plane.context.node_call_key, node.deployment_id)
    url = f"http://127.0.0.1:{node.ready_port}/whoami"
    async with httpx.AsyncClient(trust_env=False) as http:
        unsigned = await http.get(url)
        assert unsigned.status_code == 401
        signed = await http.get(url, headers=sign(secret, "GET", "/whoami", "task-1"))
        assert signed.status_code == 200, signed.text
    assert signed.json()["port"] == container_port
    assert signed.json()["env"]["NGPU_BIND_HOST"] == "127.0.0.1"


@pytest.mark.parametrize("node", [True], indirect=True, ids=["proxy-tls"])
async def test_a_tls_node_is_called_trusting_the_certificate_it_registered(
    node: Node,
    control_plane: ControlPlane,  # noqa: F811
) -> None:
    registration = node.agent.client.registration
    assert registration is not None
    registered = control_plane.context.follower.directory.nodes[registration.node_id].registered
    assert registered.proxy_cert == node.agent.identity.proxy_cert != ""
    dispatch = TaskDispatched(
        task_id="task-1", workspace_id=node.workspace_id, attempt=1,
        node_id=registration.node_id, node_ip="127.0.0.1", node_address=registered.address,
        deployment_id=node.deployment_id, host_port=node.ready_port, param_url="/echo",
        request_body='{"hello": 1}', proxy_cert_sha256=registered.proxy_cert_sha256,
    )  # fmt: skip
    policy = CallPolicy(call_key=control_plane.context.node_call_key)
    async with aiohttp.ClientSession() as session:
        outcome = await call_node(session, dispatch, policy)
    assert isinstance(outcome, TaskCompleted), outcome
    assert outcome.status_code == 200 and "hello" in outcome.response_body
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(httpx.TransportError):  # the proxy speaks TLS only
            await http.get(f"http://127.0.0.1:{node.ready_port}/health")
