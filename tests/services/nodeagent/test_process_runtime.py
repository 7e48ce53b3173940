"""The process runtime against real child processes and real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.nodeagent import DeploymentError, UnknownDeployment
from services.nodeagent.runtimes import (
    Backoff,
    DeploymentHandle,
    ProcessRuntime,
    RestartPolicy,
    StatusReport,
)
from tests.services.nodeagent.helpers import (
    DEADLINE_S,
    Reports,
    deployment,
    pid_alive,
    quick_config,
    wait_dead,
    wait_file,
)

SAMPLEAPP_MODULE = f"{sys.executable} -m services.sampleapp --quiet"


async def get_json(port: int, path: str) -> dict[str, object]:
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(f"http://127.0.0.1:{port}{path}")
        response.raise_for_status()
        result: dict[str, object] = response.json()
        return result


async def get_json_when_up(port: int, path: str) -> dict[str, object]:
    """Like `get_json`, for a server that may still be starting (not health-checked)."""
    for _ in range(int(DEADLINE_S / 0.05)):
        try:
            return await get_json(port, path)
        except httpx.ConnectError:
            await asyncio.sleep(0.05)
    pytest.fail(f"nothing answers on port {port}")


def is_ready(handle: DeploymentHandle, attempt: int = 1) -> Callable[[StatusReport], bool]:
    return lambda r: (
        r.deployment_id == handle.deployment_id and r.state == "ready" and r.attempt == attempt
    )


async def test_sample_app_becomes_ready_and_its_mapped_ports_answer(
    runtime: ProcessRuntime, reports: Reports
) -> None:
    # A second app on the second declared port, started by the shell: both must answer.
    command = ("sh", "-c", f"{SAMPLEAPP_MODULE} --port $NGPU_PORT_9090 & exec {SAMPLEAPP_MODULE}")
    handle = await runtime.start(deployment(command=command, ports=(8080, 9090)))

    ready = await reports.wait_for(is_ready(handle))

    assert ready.host_ports == handle.host_ports
    assert set(handle.host_ports) == {"8080", "9090"}
    assert runtime.status(handle) == "ready"
    assert reports.states("dep-1")[:2] == ["starting", "ready"]
    first = await get_json(handle.host_ports["8080"], "/whoami")
    assert first["port"] == handle.host_ports["8080"]
    # Only the first declared port is health-checked: the second app may still be starting.
    second = await get_json_when_up(handle.host_ports["9090"], "/health")
    assert second == {"ok": True}


async def test_the_child_gets_ngpu_variables_over_its_env_and_no_agent_secret(
    tmp_path: Path, reports: Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NGPU_NODE_JOIN_TOKEN", "agent-secret")
    spec = deployment(
        command=("sh", "-c", f"env; exec {SAMPLEAPP_MODULE}"),
        ports=(8080, 7000),
        env={"MODEL": "sdxl", "PORT": "1"},  # NGPU's PORT wins over the workspace's
    )
    async with ProcessRuntime(quick_config(tmp_path), reports) as runtime:
        handle = await runtime.start(spec, gpu_device_ids=["0", "2"])
        await reports.wait_for(is_ready(handle))
        whoami = await get_json(handle.host_ports["8080"], "/whoami")
        env_lines = set(runtime.log_file(handle).read_text().splitlines())

    assert whoami["node"] == "node-1"
    assert whoami["env"] == {
        "PORT": str(handle.host_ports["8080"]),
        "NGPU_PORT_8080": str(handle.host_ports["8080"]),
        "NGPU_PORT_7000": str(handle.host_ports["7000"]),
        "NGPU_DEPLOYMENT_ID": "dep-1",
        "NGPU_NODE_ID": "node-1",
        "NGPU_BIND_HOST": "127.0.0.1",
    }
    assert {"MODEL=sdxl", "CUDA_VISIBLE_DEVICES=0,2"} <= env_lines
    assert not any("agent-secret" in line for line in env_lines)


async def test_a_child_that_dies_is_reported_and_restarted_on_the_same_ports(
    runtime: ProcessRuntime, reports: Reports
) -> None:
    handle = await runtime.start(deployment())
    await reports.wait_for(is_ready(handle))
    before = await get_json(handle.host_ports["8080"], "/whoami")

    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.HTTPError):  # the app exits without answering
            await client.post(f"http://127.0.0.1:{handle.host_ports['8080']}/exit?code=7")

    failed = await reports.wait_for(lambda r: r.state == "failed")
    await reports.wait_for(is_ready(handle, attempt=2))
    after = await get_json(handle.host_ports["8080"], "/whoami")

    assert failed.reason == "exited with code 7"
    assert failed.retry_in_s == 0.05
    assert failed.attempt == 1
    assert after["pid"] != before["pid"]
    assert reports.states("dep-1") == ["starting", "ready", "failed", "starting", "ready"]


async def test_restarts_back_off_exponentially_up_to_the_cap_then_give_up(
    tmp_path: Path, reports: Reports
) -> None:
    policy = RestartPolicy(backoff=Backoff(initial_s=0.01, factor=3.0, max_s=0.05), max_restarts=3)
    command = ("sh", "-c", "echo booting; echo 'CUDA out of memory' >&2; exit 3")
    async with ProcessRuntime(quick_config(tmp_path, restart=policy), reports) as runtime:
        handle = await runtime.start(deployment(command=command))
        await reports.wait_for(lambda r: r.state == "failed" and r.retry_in_s is None)
        status = runtime.status(handle)

    failures = [r for r in reports.items if r.state == "failed"]
    assert [r.retry_in_s for r in failures] == [0.01, 0.03, 0.05, None]
    assert [r.attempt for r in failures] == [1, 2, 3, 4]
    assert {r.reason for r in failures} == {"exited with code 3 before becoming healthy"}
    assert "CUDA out of memory" in failures[-1].log_tail
    assert status == "failed"
    assert "ready" not in reports.states("dep-1")


async def test_a_command_that_never_becomes_healthy_is_failed_with_its_log_tail(
    tmp_path: Path, reports: Reports
) -> None:
    pid_file = tmp_path / "child.pid"
    script = (
        "import os, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "print('loading weights 42%', flush=True)\n"
        "time.sleep(300)\n"
    )
    config = quick_config(tmp_path, health_timeout_s=1.0, restart=RestartPolicy(max_restarts=0))
    async with ProcessRuntime(config, reports) as runtime:
        handle = await runtime.start(deployment(command=(sys.executable, "-c", script)))
        failed = await reports.wait_for(lambda r: r.state == "failed")

    port = handle.host_ports["8080"]
    assert failed.reason == f"no 2xx from http://127.0.0.1:{port}/health within 1 s"
    assert "loading weights 42%" in failed.log_tail
    assert failed.retry_in_s is None
    assert "loading weights 42%" in failed.full_reason()
    assert not pid_alive(int(pid_file.read_text()))


async def test_stop_kills_the_whole_process_group_and_reports_stopped_once(
    runtime: ProcessRuntime, reports: Reports, tmp_path: Path
) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    command = (
        "sh",
        "-c",
        f"{sys.executable} -c '{stubborn}' & echo $! > {tmp_path}/grandchild.pid; "
        f"echo $$ > {tmp_path}/leader.pid; exec {SAMPLEAPP_MODULE}",
    )
    handle = await runtime.start(deployment(command=command))
    await reports.wait_for(is_ready(handle))
    grandchild = int(await wait_file(tmp_path / "grandchild.pid"))
    leader = int(await wait_file(tmp_path / "leader.pid"))
    assert pid_alive(grandchild) and pid_alive(leader)

    await runtime.stop(handle, reason="scale-in")
    await runtime.stop(handle, reason="again")  # stopping a stopped deployment does nothing

    await wait_dead(grandchild)  # it ignored SIGTERM: the group's SIGKILL ended it
    assert not pid_alive(leader)
    stopped = [r for r in reports.items if r.state == "stopped"]
    assert [r.reason for r in stopped] == ["scale-in"]
    assert runtime.status(handle) == "stopped"
    assert runtime.handles() == ()
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{handle.host_ports['8080']}/health")


async def test_logs_are_kept_per_deployment_with_the_agents_notes(
    runtime: ProcessRuntime, reports: Reports
) -> None:
    command = ("sh", "-c", f"echo hello from the model; exec {SAMPLEAPP_MODULE}")
    handle = await runtime.start(deployment("dep/../odd id", command=command))
    await reports.wait_for(is_ready(handle))
    await runtime.stop(handle)

    log_file = runtime.log_file(handle)
    text = log_file.read_text()
    assert log_file.parent == runtime._config.log_dir
    assert log_file.name == "dep_.._odd_id.log"
    assert "hello from the model" in text
    assert "sampleapp listening on http://127.0.0.1:" in text
    assert "] start attempt 1: sh -c" in text
    assert "] healthy at http://127.0.0.1:" in text
    assert "] stopped on request" in text
    assert runtime.log_tail(handle, 1) == (text.splitlines()[-1],)


async def test_start_is_idempotent_per_deployment_and_stop_all_stops_everything(
    runtime: ProcessRuntime, reports: Reports
) -> None:
    first = await runtime.start(deployment("a"))
    again = await runtime.start(deployment("a"))
    other = await runtime.start(deployment("b"))
    await reports.wait_for(is_ready(first))
    await reports.wait_for(is_ready(other))

    await runtime.stop_all("node draining")

    assert again == first
    assert first.host_ports != other.host_ports
    assert reports.states("a") == ["starting", "ready", "stopped"]
    assert reports.states("b") == ["starting", "ready", "stopped"]
    assert runtime.handles() == ()


async def test_a_missing_executable_is_reported_failed(tmp_path: Path, reports: Reports) -> None:
    config = quick_config(tmp_path, restart=RestartPolicy(max_restarts=0))
    async with ProcessRuntime(config, reports) as runtime:
        await runtime.start(deployment(command=(str(tmp_path / "no-such-binary"),)))
        failed = await reports.wait_for(lambda r: r.state == "failed")

    assert failed.reason.startswith(f"cannot start {str(tmp_path / 'no-such-binary')!r}:")
    assert failed.retry_in_s is None


async def test_a_failing_status_callback_does_not_stop_supervision(tmp_path: Path) -> None:
    seen = Reports()

    def flaky(report: object) -> None:
        seen(report)  # type: ignore[arg-type]
        raise RuntimeError("callback bug")

    async with ProcessRuntime(quick_config(tmp_path), flaky) as runtime:
        handle = await runtime.start(deployment())
        await seen.wait_for(is_ready(handle))
    assert seen.states("dep-1") == ["starting", "ready", "stopped"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ports": ()}, "declares no port"),
        ({"ports": (8080, 8080)}, "invalid ports"),
        ({"ports": (70000,)}, "invalid ports"),
        ({"command": ()}, "no command"),
        ({"health_path": "health"}, "must start with '/'"),
    ],
)
async def test_invalid_specs_are_refused(
    runtime: ProcessRuntime, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeploymentError, match=message):
        await runtime.start(deployment(**fields))
    assert runtime.handles() == ()


async def test_an_unknown_handle_is_an_error(runtime: ProcessRuntime) -> None:
    stranger = DeploymentHandle("nope", "node-1", {"8080": 1})
    with pytest.raises(UnknownDeployment):
        runtime.status(stranger)
    with pytest.raises(UnknownDeployment):
        await runtime.stop(stranger)
