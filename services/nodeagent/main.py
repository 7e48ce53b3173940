"""`ngpu node`: build the agent from command-line values and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

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
) -> None:
    """Run a node agent until SIGTERM or SIGINT, then stop its deployments and return."""
    discovery = discover_gpus(gpus)
    log.info("GPUs from %s: %s", discovery.source, discovery.gpus)
    client = ControlPlaneClient(control_plane, join_token)
    identity = AgentIdentity(address, host, discovery.gpus, region, runtime)
    agent = NodeAgent(client, identity, runtime_factory(runtime, work_dir), proxy_host=host)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.stop)
    try:
        await agent.run()
    finally:
        await client.aclose()
