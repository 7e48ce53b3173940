"""The docker runtime: the pure container spec, a clear error where no engine answers, and
the whole run through the real docker SDK against a fake engine on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from docker.types import DeviceRequest

from services.nodeagent import RuntimeUnavailable
from services.nodeagent.runtimes import (
    DockerRuntime,
    DockerRuntimeConfig,
    RestartPolicy,
    container_name,
    container_spec,
    pick_free_ports,
)
from services.nodeagent.runtimes.supervise import Backoff
from tests.services.nodeagent.fake_docker_engine import FakeEngine, serve_fake_engine
from tests.services.nodeagent.helpers import REPO_ROOT, SAMPLEAPP, Reports, deployment

LABELS = {
    "ai.ngpu.managed": "true",
    "ai.ngpu.deployment-id": "dep-1",
    "ai.ngpu.node-id": "node-1",
}
IDS_ENV = {"NGPU_DEPLOYMENT_ID": "dep-1", "NGPU_NODE_ID": "node-1"}
GPU = [["gpu"]]


def expected_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "ngpu/sampleapp:latest",
        "command": ["python", "-m", "services.sampleapp"],
        "name": "ngpu-dep-1",
        "detach": True,
        "init": True,
        "environment": {"PORT": "8080", "NGPU_PORT_8080": "8080", **IDS_ENV},
        "ports": {"8080/tcp": ("127.0.0.1", 41000)},
        "labels": LABELS,
        "restart_policy": {"Name": "no"},
        "device_requests": [DeviceRequest(count=1, capabilities=GPU)],
    }
    spec.update(overrides)
    return {k: v for k, v in spec.items() if v is not ...}


COMMAND = ("python", "-m", "services.sampleapp")


@pytest.mark.parametrize(
    ("fields", "gpu_ids", "host_ports", "options", "expected"),
    [
        pytest.param({}, None, {"8080": 41000}, {}, expected_spec(), id="defaults"),
        pytest.param(
            {"gpu_count": 2},
            ["GPU-a1", "GPU-b2"],
            {"8080": 41000},
            {},
            expected_spec(
                device_requests=[DeviceRequest(device_ids=["GPU-a1", "GPU-b2"], capabilities=GPU)]
            ),
            id="device-ids-win-over-count",
        ),
        pytest.param(
            {"gpu_count": 4},
            None,
            {"8080": 41000},
            {},
            expected_spec(device_requests=[DeviceRequest(count=4, capabilities=GPU)]),
            id="count",
        ),
        pytest.param(
            {"gpu_count": 0},
            None,
            {"8080": 41000},
            {},
            expected_spec(device_requests=...),
            id="no-gpu",
        ),
        pytest.param(
            {"ports": (7860, 8080), "env": {"MODEL": "sdxl", "PORT": "1"}},
            None,
            {"7860": 41000, "8080": 41001},
            {
                "bind_host": "10.0.0.5",
                "restart_policy": {"Name": "on-failure", "MaximumRetryCount": 3},
            },
            expected_spec(
                environment={
                    "MODEL": "sdxl",
                    "PORT": "7860",
                    "NGPU_PORT_7860": "7860",
                    "NGPU_PORT_8080": "8080",
                    **IDS_ENV,
                },
                ports={"7860/tcp": ("10.0.0.5", 41000), "8080/tcp": ("10.0.0.5", 41001)},
                restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
            ),
            id="ports-env-bind-restart",
        ),
        pytest.param(
            {"command": ()},
            None,
            {"8080": 41000},
            {},
            expected_spec(command=None),
            id="image-default-command",
        ),
        pytest.param(
            {"deployment_id": "ws 1/rep:2"},
            None,
            {"8080": 41000},
            {},
            expected_spec(
                name="ngpu-ws_1_rep_2",
                labels=LABELS | {"ai.ngpu.deployment-id": "ws 1/rep:2"},
                environment={
                    "PORT": "8080",
                    "NGPU_PORT_8080": "8080",
                    **IDS_ENV,
                    "NGPU_DEPLOYMENT_ID": "ws 1/rep:2",
                },
            ),
            id="odd-deployment-id",
        ),
    ],
)
def test_container_spec(
    fields: dict[str, Any],
    gpu_ids: list[str] | None,
    host_ports: dict[str, int],
    options: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    spec = deployment(command=fields.pop("command", COMMAND), **fields)
    assert container_spec(spec, gpu_ids, host_ports, **options) == expected


@pytest.mark.parametrize(
    ("deployment_id", "name"),
    [("dep-1", "ngpu-dep-1"), ("a.b_c", "ngpu-a.b_c"), ("x/y z", "ngpu-x_y_z")],
)
def test_container_name(deployment_id: str, name: str) -> None:
    assert container_name(deployment_id) == name


def unreachable_engines(tmp_path: Path) -> list[str]:
    closed_port = pick_free_ports(1)[0]
    return [f"unix://{tmp_path}/docker.sock", f"tcp://127.0.0.1:{closed_port}"]


async def test_start_raises_runtime_unavailable_where_no_engine_answers(tmp_path: Path) -> None:
    for url in unreachable_engines(tmp_path):
        reports = Reports()
        config = DockerRuntimeConfig(log_dir=tmp_path / "logs", base_url=url, engine_timeout_s=5)
        async with DockerRuntime(config, reports) as runtime:
            with pytest.raises(RuntimeUnavailable, match=f"^no Docker engine answers at {url}: "):
                await runtime.start(deployment())
            with pytest.raises(RuntimeUnavailable):
                await runtime.ping()
            assert runtime.handles() == ()
        assert reports.items == []


@pytest.mark.skipif(
    os.path.exists("/var/run/docker.sock") or "DOCKER_HOST" in os.environ,
    reason="a Docker engine may answer here",
)
async def test_on_this_machine_the_default_engine_is_unavailable(tmp_path: Path) -> None:
    config = DockerRuntimeConfig(log_dir=tmp_path)
    async with DockerRuntime(config, Reports()) as runtime:
        with pytest.raises(RuntimeUnavailable) as raised:
            await runtime.start(deployment())
    assert str(raised.value).startswith("no Docker engine answers at unix:///var/run/docker.sock: ")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[FakeEngine, str]]:
    port = pick_free_ports(1)[0]
    workdir = tmp_path / "engine"
    workdir.mkdir()
    async with serve_fake_engine(workdir, REPO_ROOT, port) as fake:
        yield fake, f"tcp://127.0.0.1:{port}"


def fast_config(tmp_path: Path, base_url: str, **overrides: Any) -> DockerRuntimeConfig:
    values: dict[str, Any] = {
        "log_dir": tmp_path / "logs",
        "base_url": base_url,
        "bind_host": "127.0.0.1",
        "health_timeout_s": 20.0,
        "health_interval_s": 0.05,
        "monitor_interval_s": 0.05,
        "stop_grace_s": 3.0,
        "restart": RestartPolicy(backoff=Backoff(initial_s=0.05, max_s=0.2)),
    }
    values.update(overrides)
    return DockerRuntimeConfig(**values)


async def test_a_container_is_pulled_run_published_checked_and_removed(
    tmp_path: Path, engine: tuple[FakeEngine, str]
) -> None:
    fake, url = engine
    reports = Reports()
    async with DockerRuntime(fast_config(tmp_path, url), reports) as runtime:
        assert await runtime.ping() == "fake-27.0"
        handle = await runtime.start(deployment(command=SAMPLEAPP), gpu_device_ids=["GPU-1"])
        ready = await reports.wait_for(lambda r: r.state == "ready")
        port = handle.host_ports["8080"]
        async with httpx.AsyncClient(trust_env=False) as client:
            whoami = (await client.get(f"http://127.0.0.1:{port}/whoami")).json()
        (container,) = fake.containers.values()
        await runtime.stop(handle, reason="workspace deleted")

    assert ready.host_ports == {"8080": port}
    assert whoami["node"] == "node-1"
    assert fake.images == {"ngpu/sampleapp:latest"}
    body = container.body
    assert container.name == "ngpu-dep-1"
    assert body["Labels"]["ai.ngpu.deployment-id"] == "dep-1"
    assert "PORT=8080" in body["Env"]
    assert body["HostConfig"]["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
    }
    assert body["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == ["GPU-1"]
    assert container.removed
    assert container.proc is not None and container.proc.poll() is not None
    assert reports.states("dep-1") == ["starting", "ready", "stopped"]
    assert reports.items[-1].reason == "workspace deleted"
    assert fake.calls.index("POST /images/create") < fake.calls.index("POST /containers/create")


async def test_a_container_that_exits_is_reported_with_its_logs_and_run_again(
    tmp_path: Path, engine: tuple[FakeEngine, str]
) -> None:
    fake, url = engine
    reports = Reports()
    fake.images.add("ngpu/sampleapp:latest")  # present: nothing to pull
    command = ("sh", "-c", f"echo model loaded; exec {' '.join(SAMPLEAPP)}")
    async with DockerRuntime(fast_config(tmp_path, url), reports) as runtime:
        handle = await runtime.start(deployment(command=command))
        await reports.wait_for(lambda r: r.state == "ready")
        async with httpx.AsyncClient(trust_env=False) as client:
            with pytest.raises(httpx.HTTPError):
                await client.post(f"http://127.0.0.1:{handle.host_ports['8080']}/exit?code=7")
        failed = await reports.wait_for(lambda r: r.state == "failed")
        await reports.wait_for(lambda r: r.state == "ready" and r.attempt == 2)

    assert failed.reason == "container exited with exit code 7"
    assert "model loaded" in failed.log_tail
    assert failed.retry_in_s == 0.05
    assert "POST /images/create" not in fake.calls
    first, second = fake.containers.values()
    assert first.removed and second.removed
    assert reports.states("dep-1") == [
        "starting",
        "ready",
        "failed",
        "starting",
        "ready",
        "stopped",
    ]


async def test_an_image_that_cannot_be_pulled_is_reported_failed(
    tmp_path: Path, engine: tuple[FakeEngine, str]
) -> None:
    _, url = engine
    reports = Reports()
    config = fast_config(tmp_path, url, restart=RestartPolicy(max_restarts=0))
    async with DockerRuntime(config, reports) as runtime:
        await runtime.start(deployment(image="private/model:v1"))
        failed = await reports.wait_for(lambda r: r.state == "failed")

    assert failed.reason.startswith("cannot run image 'private/model:v1': ")
    assert "pull access denied" in failed.reason
    assert failed.retry_in_s is None
