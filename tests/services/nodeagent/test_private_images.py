"""Issue 15: private images. Registry credentials given to the control plane are sealed
before they reach the log, opened only for the node a deployment of the workspace is
assigned to, and given to the Docker engine in the pull's `X-Registry-Auth` header only.
A real control plane, a real agent with the docker runtime against a fake engine on
127.0.0.1 (real HTTP, containers as real child processes), the real embedded bus."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from events import DeploymentRequested, GpuInfo, topics
from services.bus import publish_events
from services.nodeagent.agent import AgentIdentity, NodeAgent
from services.nodeagent.control import ControlPlaneClient
from services.nodeagent.errors import ControlPlaneError
from services.nodeagent.runtimes import DockerRuntime, StatusCallback
from services.nodeagent.runtimes.base import RegistryCredentials
from services.secretbox import SecretBox
from tests.services.ingress.conftest import JOIN, ControlPlane, control_plane  # noqa: F401
from tests.services.nodeagent.fake_docker_engine import FakeEngine
from tests.services.nodeagent.helpers import DEADLINE_S, SAMPLEAPP, Reports, deployment
from tests.services.nodeagent.test_docker_runtime import engine, fast_config  # noqa: F401

PASSWORD = "pw-" + secrets.token_hex(12)
AUTH = {"server": "registry.example.com", "username": "robot$puller", "password": PASSWORD}
ENGINE_AUTH = {"username": AUTH["username"], "password": PASSWORD, "serveraddress": AUTH["server"]}


def _files_mention(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


async def test_a_private_image_is_pulled_with_its_credentials_in_the_header_only(
    tmp_path: Path,
    engine: tuple[FakeEngine, str],  # noqa: F811
) -> None:
    """Even an image the node holds is pulled again: the registry checks the credentials
    at each start. Nothing of them is in the container, its command or the node's files."""
    fake, url = engine
    fake.images.add("ngpu/sampleapp:latest")
    reports = Reports()
    credentials = RegistryCredentials(AUTH["server"], AUTH["username"], PASSWORD)
    assert PASSWORD not in repr(credentials) and PASSWORD not in repr(
        deployment(credentials=credentials, registry_auth=True)
    )
    async with DockerRuntime(fast_config(tmp_path, url), reports) as runtime:
        await runtime.start(
            deployment(command=SAMPLEAPP, credentials=credentials, registry_auth=True)
        )
        await reports.wait_for(lambda r: r.state == "ready")
    (container,) = fake.containers.values()
    assert fake.pull_auths == [ENGINE_AUTH]
    assert PASSWORD not in str(container.body)
    assert _files_mention(tmp_path, PASSWORD) == []


async def test_an_image_without_credentials_is_pulled_without_them(
    tmp_path: Path,
    engine: tuple[FakeEngine, str],  # noqa: F811
) -> None:
    fake, url = engine
    reports = Reports()
    async with DockerRuntime(fast_config(tmp_path, url), reports) as runtime:
        await runtime.start(deployment(command=SAMPLEAPP))
        await reports.wait_for(lambda r: r.state == "ready")
    assert fake.pull_auths == [None]


@pytest.fixture
async def sealing_control_plane(
    control_plane: ControlPlane,  # noqa: F811
) -> AsyncIterator[ControlPlane]:
    """The control plane with `NGPU_SECRETS_KEY` set."""
    control_plane.context.secret_box = SecretBox.parse(Fernet.generate_key().decode())
    yield control_plane


async def _wait(predicate: Any) -> Any:
    async with asyncio.timeout(DEADLINE_S):
        while not (value := predicate()):  # noqa: ASYNC110 - polls another task's state
            await asyncio.sleep(0.05)
        return value


async def test_only_the_node_running_the_workspace_obtains_its_credentials(
    sealing_control_plane: ControlPlane,
    engine: tuple[FakeEngine, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    cp = sealing_control_plane
    fake, engine_url = engine
    body = {
        "name": "private-model", "image": "ngpu/private:v1", "command": list(SAMPLEAPP),
        "gpu": {"type": "RTX4090", "count": 1}, "ports": [8080], "registry_auth": AUTH,
    }  # fmt: skip
    created = await cp.http.post("/v1/workspaces", json=body, headers=cp.admin())
    assert created.status_code == 201, created.text
    workspace_id = created.json()["workspace_id"]
    shown = {"server": AUTH["server"], "username": AUTH["username"]}
    assert created.json()["registry_auth"] == shown
    read = await cp.http.get(f"/v1/workspaces/{workspace_id}", headers=cp.admin())
    assert read.json()["registry_auth"] == shown and PASSWORD not in read.text

    # The log holds the sealed token only: neither the file nor any decoded event has it.
    records = [r async for r in _all_records(cp)]
    assert records and all(PASSWORD.encode() not in r for r in records)
    assert _files_mention(cp.context.settings.data_dir, PASSWORD) == []

    # A node with the docker runtime is assigned a deployment: it fetches, then pulls.
    docker_client = ControlPlaneClient(cp.url, JOIN)
    identity = AgentIdentity("0x" + "ef" * 20, "127.0.0.1", (GpuInfo("RTX4090", 24564),),
                             runtime="docker")  # fmt: skip

    def build(on_status: StatusCallback) -> DockerRuntime:
        return DockerRuntime(fast_config(tmp_path, engine_url), on_status)

    agent = NodeAgent(docker_client, identity, build, poll_wait_s=0.5, retry_s=0.1)
    running = asyncio.create_task(agent.run())
    other = ControlPlaneClient(cp.url, JOIN)
    try:
        registration = await _wait(lambda: agent.registration)
        await other.register(address="0x" + "01" * 20, host="127.0.0.1", gpus=(),
                             region="", runtime="docker")  # fmt: skip
        published = await publish_events(cp.bus, [DeploymentRequested(
            deployment_id="dep-private-1", node_id=registration.node_id,
            workspace_id=workspace_id, image=body["image"], command=SAMPLEAPP, ports=(8080,),
            gpu_type="RTX4090", gpu_count=1,
        )])  # fmt: skip
        await cp.context.follower.wait_for(published)
        node = cp.context.follower.directory.nodes[registration.node_id]
        await _wait(lambda: node.deployments["dep-private-1"].state == "ready")
        assert fake.pull_auths == [ENGINE_AUTH]

        # Another node gets nothing: not for a deployment that is not its own...
        with pytest.raises(ControlPlaneError) as refused:
            await other.registry_credentials("dep-private-1")
        assert refused.value.status == 404 and PASSWORD not in str(refused.value)
        # ...nor with its token on the assigned node's path.
        assert other.registration is not None
        stolen = await cp.http.get(
            f"/v1/nodes/{registration.node_id}/deployments/dep-private-1/registry-auth",
            headers={"Authorization": f"Bearer {other.registration.token}"},
        )
        assert stolen.status_code == 401 and PASSWORD not in stolen.text
        # The assigned node is answered, as long as the deployment is its own.
        assert (await docker_client.registry_credentials("dep-private-1")).password == PASSWORD
    finally:
        agent.stop()
        await asyncio.wait_for(running, DEADLINE_S)
        await docker_client.aclose()
        await other.aclose()
    assert _files_mention(tmp_path / "logs", PASSWORD) == []


async def _all_records(cp: ControlPlane) -> AsyncIterator[bytes]:
    """Every record of the workspace topic, as stored."""
    async for record in cp.bus.replay([topics.WORKSPACES]):
        yield record.value
