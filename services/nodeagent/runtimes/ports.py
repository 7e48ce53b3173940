"""Host ports and the environment that tells a deployment where it listens."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Collection, Sequence

from services.nodeagent.errors import DeploymentError
from services.nodeagent.runtimes.base import Assignment

_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 (naming them, not binding)


def pick_free_ports(
    count: int, host: str = "127.0.0.1", exclude: Collection[int] = ()
) -> list[int]:
    """`count` distinct ports that the kernel says are free on `host` now, none in
    `exclude`. All sockets are held until every port is chosen, so they differ; a port
    can still be taken by someone else before the deployment binds it (then it fails
    and is restarted)."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            held.append(sock)
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            if port not in exclude:
                ports.append(port)
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()
    return ports


def host_port_map(container_ports: Sequence[int], host_ports: Sequence[int]) -> dict[str, int]:
    """`{"<containerPort>": hostPort}` in declaration order, as `DeploymentReady` has it."""
    return {str(c): h for c, h in zip(container_ports, host_ports, strict=True)}


def deployment_env(spec: Assignment, listen_ports: dict[str, int]) -> dict[str, str]:
    """The variables NGPU sets for a deployment, over the spec's own `env`: `PORT` (where
    the first declared port listens), `NGPU_PORT_<containerPort>` for each declared port,
    and the deployment and node ids (never the workspace's: nodes do not know it).
    `listen_ports` maps declared port to the port the app must bind (a host port for
    processes, the same port in a container)."""
    first = str(spec.ports[0])
    env = dict(spec.env)
    env["PORT"] = str(listen_ports[first])
    env.update({f"NGPU_PORT_{c}": str(p) for c, p in listen_ports.items()})
    env["NGPU_DEPLOYMENT_ID"] = spec.deployment_id
    env["NGPU_NODE_ID"] = spec.node_id
    return env


def validate_spec(spec: Assignment, *, needs_command: bool) -> None:
    """Raise `DeploymentError` for a spec no runtime can serve: no port, a port out of
    range or repeated, a health path not starting with `/`, or (for processes) no
    command."""
    where = f"deployment {spec.deployment_id!r}"
    if not spec.ports:
        raise DeploymentError(f"{where} declares no port")
    if len(set(spec.ports)) != len(spec.ports) or any(not 0 < p < 65536 for p in spec.ports):
        raise DeploymentError(f"{where} has invalid ports {list(spec.ports)}")
    if not spec.health_path.startswith("/"):
        raise DeploymentError(f"{where} health_path must start with '/': {spec.health_path!r}")
    if needs_command and not spec.command:
        raise DeploymentError(f"{where} has no command to run")


def health_url(bind_host: str, host_port: int, health_path: str) -> str:
    """Where the agent polls a deployment published on `bind_host`: a wildcard bind is
    reached through the loopback address."""
    host = "127.0.0.1" if bind_host in _WILDCARDS else bind_host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{host_port}{health_path}"
