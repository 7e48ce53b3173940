"""Issue 15: a workspace's replicas' output, read by the control plane from a real agent
(process runtime, the sample app printing its access log) over real HTTP, through the
deployment's proxy; and who else may read it (nobody)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import DeploymentRequested, GpuInfo
from services.bus import publish_events
from services.callsign import LOGS_PATH, deployment_secret, logs_secret, sign
from services.certs import proxy_certificate
from services.nodeagent.agent import AgentIdentity, NodeAgent
from services.nodeagent.control import ControlPlaneClient
from services.nodeagent.logstream import MAX_LINE_CHARS, TRUNCATED, LogFollower
from services.nodeagent.runtimes import ProcessRuntime, StatusCallback
from tests.services.ingress.conftest import JOIN, ControlPlane, control_plane  # noqa: F401
from tests.services.nodeagent.helpers import DEADLINE_S, quick_config

# Not --quiet: the sample app prints a line per request it serves.
LOUD_SAMPLEAPP = (sys.executable, "-m", "services.sampleapp")
WORKSPACE: dict[str, Any] = {
    "name": "loud-model", "image": "ngpu/sampleapp:latest", "command": list(LOUD_SAMPLEAPP),
    "gpu": {"type": "RTX4090", "count": 1}, "ports": [8080],
}  # fmt: skip


@dataclass
class Replica:
    workspace_id: str
    deployment_id: str
    port: int
    secret: str
    scheme: str


async def _wait(predicate: Any) -> Any:
    async with asyncio.timeout(DEADLINE_S):
        while not (value := predicate()):  # noqa: ASYNC110 - polls another task's state
            await asyncio.sleep(0.05)
        return value


@pytest.fixture(params=[False, True], ids=["http", "tls"])
async def replica(
    control_plane: ControlPlane,  # noqa: F811
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Replica]:
    """One ready replica of a workspace on a real agent, whose proxies serve plain HTTP
    or (pinned) HTTPS."""
    cp = control_plane
    created = await cp.http.post("/v1/workspaces", json=WORKSPACE, headers=cp.admin())
    assert created.status_code == 201, created.text
    workspace_id = created.json()["workspace_id"]
    client = ControlPlaneClient(cp.url, JOIN)
    identity = AgentIdentity("0x" + "cd" * 20, "127.0.0.1", (GpuInfo("RTX4090", 24564),))

    def build(on_status: StatusCallback) -> ProcessRuntime:
        return ProcessRuntime(quick_config(tmp_path), on_status)

    certificate = proxy_certificate() if request.param else None
    agent = NodeAgent(client, identity, build, poll_wait_s=0.5, retry_s=0.1,
                      certificate=certificate, log_dir=tmp_path / "logs")  # fmt: skip
    running = asyncio.create_task(agent.run())
    registration = await _wait(lambda: agent.registration)
    deployment_id = "dep-logs-1"
    records = await publish_events(cp.bus, [DeploymentRequested(
        deployment_id=deployment_id, node_id=registration.node_id, workspace_id=workspace_id,
        image=WORKSPACE["image"], command=LOUD_SAMPLEAPP, ports=(8080,), gpu_type="RTX4090",
        gpu_count=1,
    )])  # fmt: skip
    await cp.context.follower.wait_for(records)
    node = cp.context.follower.directory.nodes[registration.node_id]

    def ready_port() -> int | None:
        view = node.deployments[deployment_id]
        return view.host_ports.get("8080") if view.state == "ready" else None

    port = await _wait(ready_port)
    secret = deployment_secret(cp.context.node_call_key, deployment_id)
    try:
        yield Replica(workspace_id, deployment_id, port, secret, "https" if certificate else "http")
    finally:
        agent.stop()
        await asyncio.wait_for(running, DEADLINE_S)
        await client.aclose()


def _proxy(replica: Replica) -> httpx.AsyncClient:
    # The test trusts any certificate here: what it checks is the signature, not the pin.
    return httpx.AsyncClient(base_url=f"{replica.scheme}://127.0.0.1:{replica.port}",
                             verify=False, timeout=DEADLINE_S)  # fmt: skip


async def _call_container(replica: Replica, path: str) -> httpx.Response:
    """A call as the dispatcher signs it (the deployment's own secret)."""
    async with _proxy(replica) as proxy:
        return await proxy.get(path, headers=sign(replica.secret, "GET", path, "task-1"))


async def test_the_control_plane_reads_each_replicas_last_lines(
    control_plane: ControlPlane,  # noqa: F811
    replica: Replica,
) -> None:
    cp = control_plane
    assert (await _call_container(replica, "/whoami")).status_code == 200
    url = f"/v1/workspaces/{replica.workspace_id}/logs"

    async def tail() -> dict[str, Any] | None:
        answer = await cp.http.get(url, params={"tail": 50}, headers=cp.admin())
        assert answer.status_code == 200, answer.text
        [only] = answer.json()["replicas"]
        return only if any("/whoami" in line for line in only["lines"]) else None

    for _ in range(int(DEADLINE_S / 0.1)):  # the access line may trail the answer a little
        if found := await tail():
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the replica's access log line never showed")
    assert found["deployment_id"] == replica.deployment_id and found["error"] is None
    assert found["state"] == "ready"
    assert any("sampleapp listening" in line for line in found["lines"])
    assert len(found["lines"]) <= 50
    one = await cp.http.get(url, params={"tail": 1}, headers=cp.admin())
    assert len(one.json()["replicas"][0]["lines"]) == 1


async def test_following_streams_new_lines_as_they_are_printed(
    control_plane: ControlPlane,  # noqa: F811
    replica: Replica,
) -> None:
    cp = control_plane
    url = f"/v1/workspaces/{replica.workspace_id}/logs"
    params = {"tail": 5, "follow": "true", "max_s": 60}
    async with cp.http.stream("GET", url, params=params, headers=cp.admin()) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("application/x-ndjson")
        lines = stream.aiter_lines()
        first = json.loads(await anext(lines))  # the tail comes first
        assert first["deployment_id"] == replica.deployment_id and "line" in first
        assert (await _call_container(replica, "/whoami?followed=1")).status_code == 200
        async with asyncio.timeout(DEADLINE_S):
            async for raw in lines:
                if "/whoami?followed=1" in json.loads(raw)["line"]:
                    break
    # The client hung up: the gateway and the node let go (the next read works as usual).
    again = await cp.http.get(url, headers=cp.admin())
    assert again.status_code == 200


async def test_only_the_control_plane_can_read_a_replicas_log(replica: Replica) -> None:
    """The log path answers only reads signed with the deployment's log key: unsigned is
    refused, and a call signed as a customer's call (what a `paramUrl` of that path
    becomes) goes to the container like any other, never to the log."""
    path = f"{LOGS_PATH}?tail=5"
    async with _proxy(replica) as proxy:
        unsigned = await proxy.get(path)
        as_a_call = await proxy.get(path, headers=sign(replica.secret, "GET", path, "task-2"))
        other_key = await proxy.get(path, headers=sign("0" * 64, "GET", path, "logs"))
        read = await proxy.get(path, headers=sign(logs_secret(replica.secret), "GET", path, "x"))
    assert unsigned.status_code == 401 and unsigned.headers["X-NGPU-Proxy-Error"]
    assert as_a_call.status_code == 404 and "X-NGPU-Proxy-Error" not in as_a_call.headers
    assert other_key.status_code == 401
    assert read.status_code == 200
    assert any("sampleapp listening" in json.loads(x)["line"] for x in read.text.splitlines())


async def test_logs_of_an_unknown_workspace_are_404(control_plane: ControlPlane) -> None:  # noqa: F811
    cp = control_plane
    answer = await cp.http.get("/v1/workspaces/nope/logs", headers=cp.admin())
    assert answer.status_code == 404
    assert (await cp.http.get("/v1/workspaces/nope/logs")).status_code == 401


@pytest.mark.parametrize(
    ("writes", "expected"),
    [
        pytest.param([b"a\nb\n"], ["a", "b"], id="complete-lines"),
        pytest.param([b"par", b"tial\n"], ["partial"], id="a-line-in-two-writes"),
        pytest.param([b"no end yet"], [], id="an-unfinished-line-waits"),
        pytest.param(
            [b"x" * (MAX_LINE_CHARS * 5) + b"\nnext\n"],
            ["x" * (MAX_LINE_CHARS - len(TRUNCATED)) + TRUNCATED, "next"],
            id="a-long-line-is-cut-once",
        ),
    ],
)
def test_the_follower_reads_appended_lines(
    tmp_path: Path, writes: list[bytes], expected: list[str]
) -> None:
    log = tmp_path / "d.log"
    log.write_bytes(b"before\n")
    follower = LogFollower.at_end(log)
    seen: list[str] = []
    for chunk in writes:
        with log.open("ab") as f:
            f.write(chunk)
        while new := follower.read_new():
            seen += new
    assert seen == expected


def test_the_follower_reads_a_rotated_log_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "d.log"
    log.write_bytes(b"old line\n")
    follower = LogFollower.at_end(log)
    log.rename(tmp_path / "d.log.1")  # as `rotate_if_large` does
    log.write_bytes(b"new line\n")
    assert follower.read_new() == ["new line"]
