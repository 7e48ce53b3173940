"""What every runtime offers the agent: the `Runtime` protocol, the handle of a running
deployment, and the status reports it makes while supervising one."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from events.deployment import (
    DeploymentFailed,
    DeploymentReady,
    DeploymentRequested,
    DeploymentStarting,
    DeploymentStopped,
)

DeploymentState = Literal["starting", "ready", "failed", "stopped"]
DeploymentEvent = DeploymentStarting | DeploymentReady | DeploymentFailed | DeploymentStopped

EVENT_LOG_LINES = 20


@dataclass(frozen=True, slots=True)
class RegistryCredentials:
    """What a node pulls a private image with: fetched from the control plane for one
    deployment assigned to it (`GET /v1/nodes/{id}/deployments/{d}/registry-auth`), held
    in memory only, never logged."""

    server: str
    username: str
    password: str = field(repr=False)

    def auth_config(self) -> dict[str, str]:
        """The docker SDK's `auth_config` (sent as the Engine API's `X-Registry-Auth`)."""
        return {"username": self.username, "password": self.password,
                "serveraddress": self.server}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Assignment:
    """One deployment as a node sees it (`GET /v1/nodes/{id}/assignments`): an opaque
    deployment id, what to run, and `secret`, the key the gateway signs each call to it
    with. Never the workspace: node providers are third parties, and the Workspace ID is
    the customer's API credential."""

    deployment_id: str
    node_id: str
    image: str
    command: tuple[str, ...]
    ports: tuple[int, ...]
    gpu_type: str
    gpu_count: int
    health_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict, hash=False)
    secret: str = field(default="", repr=False)
    registry_auth: bool = False
    """Whether the image is pulled with registry credentials, which the node fetches for
    this deployment (they are never in the assignment itself)."""
    credentials: RegistryCredentials | None = field(default=None, repr=False, compare=False)
    """The fetched credentials (filled in by the agent, for the runtime)."""

    @classmethod
    def from_request(
        cls, spec: DeploymentRequested, secret: str = "", registry_auth: bool = False
    ) -> Assignment:
        """The node's view of a placement (drops the workspace)."""
        return cls(
            spec.deployment_id, spec.node_id, spec.image, tuple(spec.command),
            tuple(spec.ports), spec.gpu_type, spec.gpu_count, spec.health_path,
            dict(spec.env), secret, registry_auth,
        )  # fmt: skip

    def to_document(self) -> dict[str, Any]:
        """The JSON object of the assignments reply."""
        return {
            "deployment_id": self.deployment_id,
            "node_id": self.node_id,
            "image": self.image,
            "command": list(self.command),
            "ports": list(self.ports),
            "gpu_type": self.gpu_type,
            "gpu_count": self.gpu_count,
            "health_path": self.health_path,
            "env": dict(self.env),
            "secret": self.secret,
            "registry_auth": self.registry_auth,
        }

    @classmethod
    def from_document(cls, data: Mapping[str, Any]) -> Assignment:
        """Parse one entry of the assignments reply (unknown keys are ignored)."""
        return cls(
            str(data["deployment_id"]), str(data["node_id"]), str(data["image"]),
            tuple(str(c) for c in data["command"]), tuple(int(p) for p in data["ports"]),
            str(data["gpu_type"]), int(data["gpu_count"]),
            str(data.get("health_path", "/health")),
            {str(k): str(v) for k, v in dict(data.get("env") or {}).items()},
            str(data.get("secret", "")), data.get("registry_auth") is True,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeploymentHandle:
    """A deployment a runtime has accepted. `host_ports` maps each declared container port
    (as a string, as in `DeploymentReady`) to the host port it is published on; it stays
    the same across restarts."""

    deployment_id: str
    node_id: str
    host_ports: dict[str, int] = field(hash=False)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One transition of a supervised deployment.

    `attempt` counts starts (1 for the first). A `failed` report carries a short `reason`,
    the last lines of the deployment's log in `log_tail`, and `retry_in_s`: the delay
    before the next start, or None when the runtime has given up. `ready` carries the host
    ports; `stopped` the reason given to `stop()`. It names no workspace: the node never
    knows it; the control plane adds it (`to_event`)."""

    deployment_id: str
    node_id: str
    state: DeploymentState
    attempt: int = 0
    reason: str = ""
    host_ports: dict[str, int] = field(default_factory=dict, hash=False)
    log_tail: tuple[str, ...] = ()
    retry_in_s: float | None = None

    def full_reason(self) -> str:
        """The reason as reported: a failure's ends with the last `EVENT_LOG_LINES` lines
        of the log, so the event explains itself."""
        if self.state != "failed" or not self.log_tail:
            return self.reason
        return self.reason + "\nlast log lines:\n" + "\n".join(self.log_tail[-EVENT_LOG_LINES:])

    def to_event(self, workspace_id: str) -> DeploymentEvent:
        """The deployment event this report stands for, for the control plane, which alone
        knows the deployment's workspace."""
        ids = {
            "deployment_id": self.deployment_id,
            "node_id": self.node_id,
            "workspace_id": workspace_id,
        }
        if self.state == "starting":
            return DeploymentStarting(**ids)
        if self.state == "ready":
            return DeploymentReady(**ids, host_ports=dict(self.host_ports))
        if self.state == "stopped":
            return DeploymentStopped(**ids, reason=self.reason)
        return DeploymentFailed(**ids, reason=self.full_reason())


StatusCallback = Callable[[StatusReport], None]
"""Called on the event loop for every transition, in order, per deployment. It must not
block: an agent typically puts the report on an `asyncio.Queue` that its reporter drains.
An exception it raises is logged and otherwise ignored."""


class Runtime(Protocol):
    """Runs deployments on this host and supervises them until stopped.

    `start` is idempotent per deployment id (assignments are delivered at least once): a
    second call for a deployment that is not stopped returns its existing handle. Progress
    (`starting`, `ready`, `failed`, `stopped`) is reported through the `StatusCallback`
    the runtime was built with, never by `start`'s return."""

    @property
    def name(self) -> str:
        """The runtime's name as a node registers it (`process`, `docker`)."""
        ...

    async def start(
        self, spec: Assignment, gpu_device_ids: Sequence[str] | None = None
    ) -> DeploymentHandle:
        """Accept `spec`, publish its ports and begin starting it; returns at once.
        `gpu_device_ids` are the GPUs given to it (None: `spec.gpu_count` of any)."""
        ...

    async def stop(self, handle: DeploymentHandle, reason: str = "stopped") -> None:
        """Stop the deployment and wait until it is gone; reports `stopped` once.
        Stopping a stopped deployment does nothing."""
        ...

    def status(self, handle: DeploymentHandle) -> DeploymentState:
        """The deployment's latest state. Raises `UnknownDeployment`."""
        ...

    def handles(self) -> tuple[DeploymentHandle, ...]:
        """The deployments accepted and not stopped."""
        ...

    async def stop_all(self, reason: str = "node agent stopping") -> None:
        """Stop every deployment (the agent's SIGTERM path)."""
        ...

    async def aclose(self) -> None:
        """Stop every deployment, then release the runtime's clients; the last call."""
        ...
