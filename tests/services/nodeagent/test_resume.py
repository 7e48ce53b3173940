"""Issue 12: a restarted node agent resumes as the same node (its saved registration),
so its replicas need not wait for a predecessor to be declared lost; a revoked node, or
one whose identity changed, registers anew; two agents never share a work dir."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from events import GpuInfo
from services.nodeagent.agent import AgentIdentity, NodeAgent
from services.nodeagent.control import ControlPlaneClient
from services.nodeagent.runtimes import ProcessRuntime, StatusCallback
from services.nodeagent.saved import (
    REGISTRATION_FILE,
    WorkDirBusy,
    load_registration,
    lock_holder,
    lock_work_dir,
)
from tests.services.ingress.conftest import JOIN, ControlPlane, control_plane  # noqa: F401
from tests.services.nodeagent.helpers import DEADLINE_S, quick_config

IDENTITY = AgentIdentity("0x" + "cd" * 20, "127.0.0.1", (GpuInfo("RTX4090", 24564),))


async def _run_once(cp: ControlPlane, work_dir: Path, identity: AgentIdentity = IDENTITY) -> str:
    """Start an agent on `work_dir`, wait for its registration, stop it; its node id."""
    client = ControlPlaneClient(cp.url, JOIN)

    def build(on_status: StatusCallback) -> ProcessRuntime:
        return ProcessRuntime(quick_config(work_dir), on_status)

    agent = NodeAgent(client, identity, build, poll_wait_s=0.5, retry_s=0.1,
                      registration_file=work_dir / REGISTRATION_FILE)  # fmt: skip
    running = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(DEADLINE_S):
            while agent.registration is None:  # noqa: ASYNC110 - polls the agent's state
                await asyncio.sleep(0.02)
        return agent.registration.node_id
    finally:
        agent.stop()
        await asyncio.wait_for(running, DEADLINE_S)
        await client.aclose()


async def _node_ids(cp: ControlPlane) -> list[str]:
    listed = await cp.http.get("/v1/nodes", headers=cp.admin())
    assert listed.status_code == 200, listed.text
    return sorted(n["node_id"] for n in listed.json()["nodes"])


async def test_a_restarted_agent_resumes_as_the_same_node(
    control_plane: ControlPlane,  # noqa: F811
    tmp_path: Path,
) -> None:
    first = await _run_once(control_plane, tmp_path)
    saved = tmp_path / REGISTRATION_FILE
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600  # it holds the node's token
    second = await _run_once(control_plane, tmp_path)
    assert second == first
    assert await _node_ids(control_plane) == [first]


async def test_a_revoked_node_registers_anew(
    control_plane: ControlPlane,  # noqa: F811
    tmp_path: Path,
) -> None:
    first = await _run_once(control_plane, tmp_path)
    revoked = await control_plane.http.delete(f"/v1/nodes/{first}", headers=control_plane.admin())
    assert revoked.status_code == 204, revoked.text
    await asyncio.sleep(0.3)  # the directory follows the revocation
    second = await _run_once(control_plane, tmp_path)
    assert second != first
    saved = load_registration(tmp_path / REGISTRATION_FILE)
    assert saved is not None and saved.registration.node_id == second


async def test_a_changed_identity_registers_anew(
    control_plane: ControlPlane,  # noqa: F811
    tmp_path: Path,
) -> None:
    first = await _run_once(control_plane, tmp_path)
    moved = AgentIdentity(IDENTITY.address, IDENTITY.host, (GpuInfo("A100", 81920),))
    second = await _run_once(control_plane, tmp_path, moved)
    assert second != first


def test_two_agents_never_share_a_work_dir(tmp_path: Path) -> None:
    assert lock_holder(tmp_path) is None
    held = lock_work_dir(tmp_path)
    try:
        assert lock_holder(tmp_path) == os.getpid()
        with pytest.raises(WorkDirBusy, match=str(os.getpid())):
            lock_work_dir(tmp_path)
    finally:
        held.close()
    assert lock_holder(tmp_path) is None
    lock_work_dir(tmp_path).close()
