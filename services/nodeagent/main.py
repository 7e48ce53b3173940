"""`ngpu node`: build the agent from command-line values and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from services.certs import proxy_certificate, trusting
from services.nodeagent.agent import AgentIdentity, NodeAgent, RuntimeFactory
from services.nodeagent.control import ControlPlaneClient
from services.nodeagent.gpus import discover_gpus
from services.nodeagent.runtimes import (
    DockerRuntime,
    DockerRuntimeConfig,
    ProcessRuntime,
    ProcessRuntimeConfig,
    Runtime,
    StatusCallback,
)
from services.nodeagent.saved import REGISTRATION_FILE, lock_work_dir

log = logging.getLogger(__name__)


def runtime_factory(kind: str, work_dir: Path) -> RuntimeFactory:
    """A factory for the named runtime, rooted at `work_dir`. Deployments listen on
    loopback: only the agent's proxy (on the node's host) is reachable from outside."""

    def build(on_status: StatusCallback) -> Runtime:
        if kind == "docker":
            return DockerRuntime(DockerRuntimeConfig(log_dir=work_dir / "logs"), on_status)
        return ProcessRuntime(ProcessRuntimeConfig(log_dir=work_dir / "logs"), on_status)

    return build


async def run_node(
    *,
    control_plane: str,
    join_token: str,
    runtime: str,
    host: str,
    address: str,
    gpus: list[str],
    region: str,
    work_dir: Path,
    ca_file: Path | None = None,
    proxy_tls: bool = True,
) -> None:
    """Run a node agent until SIGTERM or SIGINT, then stop its deployments and return.
    It holds `work_dir` (`WorkDirBusy` if another agent does) and keeps its registration
    there, so a restart resumes as the same node.

    `ca_file`: the certificates an https control plane is checked against instead of the
    system's CAs. `proxy_tls`: the proxies serve HTTPS with a self-signed certificate kept
    in `work_dir` and registered (`services.certs`); raises `CertificateError` when it
    cannot be made or the CA file read."""
    lock = lock_work_dir(work_dir)
    verify = trusting(ca_file) if ca_file is not None else True
    certificate = await asyncio.to_thread(proxy_certificate, work_dir) if proxy_tls else None
    discovery = discover_gpus(gpus)
    log.info("GPUs from %s: %s", discovery.source, discovery.gpus)
    client = ControlPlaneClient(control_plane, join_token, verify=verify)
    identity = AgentIdentity(address, host, discovery.gpus, region, runtime)
    agent = NodeAgent(
        client, identity, runtime_factory(runtime, work_dir), proxy_host=host,
        registration_file=work_dir / REGISTRATION_FILE, certificate=certificate,
        log_dir=work_dir / "logs",
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.stop)
    try:
        await agent.run()
    finally:
        await client.aclose()
        lock.close()
