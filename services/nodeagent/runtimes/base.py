"""What every runtime offers the agent: the `Runtime` protocol, the handle of a running
deployment, and the status reports it makes while supervising one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

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
class DeploymentHandle:
    """A deployment a runtime has accepted. `host_ports` maps each declared container port
    (as a string, as in `DeploymentReady`) to the host port it is published on; it stays
    the same across restarts."""

    deployment_id: str
    node_id: str
    workspace_id: str
    host_ports: dict[str, int] = field(hash=False)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One transition of a supervised deployment.

    `attempt` counts starts (1 for the first). A `failed` report carries a short `reason`,
    the last lines of the deployment's log in `log_tail`, and `retry_in_s`: the delay
    before the next start, or None when the runtime has given up. `ready` carries the host
    ports; `stopped` the reason given to `stop()`."""

    deployment_id: str
    node_id: str
    workspace_id: str
    state: DeploymentState
    attempt: int = 0
    reason: str = ""
    host_ports: dict[str, int] = field(default_factory=dict, hash=False)
    log_tail: tuple[str, ...] = ()
    retry_in_s: float | None = None

    def to_event(self) -> DeploymentEvent:
        """The deployment event this report stands for; a failure's reason ends with the
        last `EVENT_LOG_LINES` lines of the log, so the event explains itself."""
        ids = {
            "deployment_id": self.deployment_id,
            "node_id": self.node_id,
            "workspace_id": self.workspace_id,
        }
        if self.state == "starting":
            return DeploymentStarting(**ids)
        if self.state == "ready":
            return DeploymentReady(**ids, host_ports=dict(self.host_ports))
        if self.state == "stopped":
            return DeploymentStopped(**ids, reason=self.reason)
        reason = self.reason
        if self.log_tail:
            reason += "\nlast log lines:\n" + "\n".join(self.log_tail[-EVENT_LOG_LINES:])
        return DeploymentFailed(**ids, reason=reason)


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
        self, spec: DeploymentRequested, gpu_device_ids: Sequence[str] | None = None
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
