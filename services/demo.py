"""`ngpu up --demo`: a local node agent (process runtime) and the sample workspace
registered through the real API, so the NGPU API can be tried with curl at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from events.errors import NgpuError
from services.certs import trusting
from services.nodeagent.saved import lock_holder
from services.settings import Settings

log = logging.getLogger(__name__)

WORKSPACE_NAME = "demo-img2img"
DEMO_BTC_ADDRESS = "bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus"
DEMO_NODE_ADDRESS = "0xCac10F51814E8e425a6877951fecb7746161c669"
POLL_S = 0.2
PROGRESS_EVERY_S = 5.0
REPLICA_GUARD_S = 600.0
"""How long the sample replica may take to be ready once the gateway is (it starts in
seconds: this only stops a demo that cannot work from waiting forever)."""
EARLIER_AGENT_STOP_S = 30.0
"""How long an agent left running by an earlier start has to stop cleanly."""


class DemoError(NgpuError):
    """The demo could not be started (the message says what it was waiting for)."""


@dataclass
class Demo:
    workspace_id: str
    agent: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait(timeout=10)


def demo_settings(settings: Settings) -> Settings:
    """With no BRC-20 provider configured, a holdings file in the data dir in which the
    contract's example address holds 100 AINN (so the contract's examples pass)."""
    if settings.resolved_brc20_provider != "none":
        return settings
    path = settings.data_dir / "brc20-demo-holdings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({DEMO_BTC_ADDRESS: {settings.brc20_ticker: 100}}, indent=2))
    return settings.model_copy(update={"brc20_file": path, "brc20_provider": "file"})


def demo_workspace() -> dict[str, object]:
    """The sample workspace `--demo` registers."""
    return {
        "name": WORKSPACE_NAME,
        "image": "ngpu/sample-img2img:demo",
        "command": [sys.executable, "-m", "services.sampleapp"],
        "gpu": {"type": "RTX 4090", "count": 1},
        "ports": [8080],
        "health_path": "/health",
        "replicas": {"min": 1, "max": 1},
        "timeout_s": 60,
    }


async def start_demo(settings: Settings, url: str, admin_token: str, join_token: str) -> Demo:
    """Wait until the gateway is ready (`/readyz`: every role has caught up with the log,
    however long that takes), then register the sample workspace (once per data dir),
    start a local node agent, and wait until the replica is ready (`DemoError` after
    `REPLICA_GUARD_S`). Logs what it waits for every few seconds."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    id_file = settings.data_dir / "demo-workspace-id"
    # With TLS the demo (and its agent) trust the gateway's own certificate, and check
    # that it names the host they call (NGPU_HOST).
    cert = settings.tls_cert_file
    verify = trusting(cert) if cert is not None else True
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, verify=verify) as http:
        await _wait_caught_up(http)
        workspace_id = id_file.read_text().strip() if id_file.exists() else ""
        if (
            not workspace_id
            or (await http.get(f"/v1/workspaces/{workspace_id}")).status_code != 200
        ):
            created = await http.post("/v1/workspaces", json=demo_workspace())
            created.raise_for_status()
            workspace_id = created.json()["workspace_id"]
            id_file.write_text(workspace_id + "\n")
        await _stop_earlier_agent(_agent_log(settings).parent)
        agent = _spawn_agent(settings, url, join_token)
        demo = Demo(workspace_id, agent)
        try:
            await _wait_replica(http, workspace_id, _agent_log(settings))
        except BaseException:
            demo.stop()
            raise
    return demo


def _agent_log(settings: Settings) -> Path:
    return settings.data_dir / "demo-node" / "agent.log"


async def _stop_earlier_agent(work_dir: Path) -> None:
    """Stop the demo's agent an earlier `ngpu up` left running (killed without its
    children): the new one resumes as the same node, and two agents must not share it.
    The pid is the one holding the work dir's lock, so it is that agent, not a reused pid."""
    holder = lock_holder(work_dir)
    if holder is None:
        return
    log.info("demo: stopping the node agent an earlier start left running (pid %d)", holder)
    with contextlib.suppress(ProcessLookupError):
        os.kill(holder, signal.SIGTERM)
    deadline = time.monotonic() + EARLIER_AGENT_STOP_S
    while lock_holder(work_dir) is not None:
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGKILL)
        await asyncio.sleep(POLL_S)


def _spawn_agent(settings: Settings, url: str, join_token: str) -> subprocess.Popen[bytes]:
    work_dir = _agent_log(settings).parent
    work_dir.mkdir(parents=True, exist_ok=True)
    output = _agent_log(settings).open("ab")
    args = [sys.executable, "-m", "services.cli", "node", "--control-plane", url,
            "--join-token", join_token, "--host", "127.0.0.1", "--address", DEMO_NODE_ADDRESS,
            "--gpu", "RTX4090:1", "--region", "local", "--work-dir", str(work_dir)]  # fmt: skip
    if settings.tls_cert_file is not None:
        args += ["--ca-file", str(settings.tls_cert_file.resolve())]
    return subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


async def _wait_caught_up(http: httpx.AsyncClient) -> None:
    """Until `/readyz` answers 200, with no limit: a long log takes long to catch up
    with, and the gateway logs its own progress meanwhile."""
    said = time.monotonic()
    while True:
        try:
            answer = await http.get("/readyz")
        except httpx.ConnectError as exc:  # e.g. a certificate that does not name the host
            raise DemoError(f"the demo cannot call the gateway at {http.base_url}: {exc}") from exc
        if answer.status_code == 200:
            return
        if time.monotonic() - said >= PROGRESS_EVERY_S:
            said = time.monotonic()
            waiting = ", ".join(answer.json().get("waiting_for", [])) or "?"
            log.info("demo: waiting for the gateway to catch up with the log (%s)", waiting)
        await asyncio.sleep(POLL_S)


async def _wait_replica(
    http: httpx.AsyncClient, workspace_id: str, agent_log: Path, guard_s: float = REPLICA_GUARD_S
) -> None:
    began = said = time.monotonic()
    while True:
        states = [
            deployment["state"]
            for node in (await http.get("/v1/nodes")).json()["nodes"]
            for deployment in node["deployments"]
            if deployment["workspace_id"] == workspace_id
        ]
        if "ready" in states:
            return
        state = ", ".join(states) or "not placed yet"
        if time.monotonic() - began >= guard_s:
            raise DemoError(
                f"the demo replica is not ready after {guard_s:.0f} s (its state: {state}); "
                f"the node agent's log is {agent_log}"
            )
        if time.monotonic() - said >= PROGRESS_EVERY_S:
            said = time.monotonic()
            log.info("demo: waiting for the sample replica to be ready (%s)", state)
        await asyncio.sleep(POLL_S)


def curl_examples(url: str, workspace_id: str, ca_file: Path | None = None) -> str:
    """`ca_file`: the certificate an https gateway is to be trusted by (`--cacert`)."""
    auth = f"-H 'Authorization: Bearer {workspace_id}' -H 'Content-Type: application/json'"
    if ca_file is not None:
        auth = f"--cacert '{ca_file}' {auth}"
    body = json.dumps({"btc_address": DEMO_BTC_ADDRESS,
                       "data": {"image_url": "https://ngpu.ai/image/1683730315image.jpeg",
                                "prompt": "a cat in a black suit, night time"}})  # fmt: skip
    return "\n".join([
        "  sync:   curl -X POST " + f"'{url}/user/img2img' {auth} -d '{body}'",
        "  async:  curl -X POST "
        + f"'{url}/user/schedulingTask?paramUrl=sdapi/v1/img2img&paramPort=8080' "
        + f"{auth} -d '{body}'",
        f"  poll:   curl '{url}/user/queryTask?taskID=<taskID>' {auth}",
        f"  list:   curl '{url}/user/queryTaskList?startTime=2024-04-11' {auth}",
        f"  detail: curl '{url}/user/getDetailed?taskID=<taskID>' {auth}",
    ])  # fmt: skip


__all__ = ["Demo", "DemoError", "curl_examples", "demo_settings", "start_demo"]
