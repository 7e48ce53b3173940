"""Errors of the node agent: GPU discovery, runtimes and the deployments they run."""

from events.errors import NgpuError


class NodeAgentError(NgpuError):
    """Root of the node agent's errors."""


class GpuDiscoveryError(NodeAgentError, ValueError):
    """A GPU list that cannot be read: a malformed configured entry (`TYPE:COUNT[:MEMORY]`)
    or `nvidia-smi` output that is not the CSV asked for. The message names the entry."""


class GpuSourceUnavailable(NodeAgentError):
    """One GPU source (NVML, `nvidia-smi`) cannot answer on this host: library, binary or
    driver absent, or no GPU found. Discovery moves on to the next source."""


class RuntimeUnavailable(NodeAgentError):
    """The runtime's engine cannot be reached (e.g. no Docker engine answers at its socket).
    Nothing was started; the message names the address and the cause."""


class DeploymentError(NodeAgentError):
    """A deployment that this runtime cannot run as specified (no command, no port, an
    invalid health path). Retrying the same spec cannot succeed."""


class UnknownDeployment(NodeAgentError, LookupError):
    """A handle or deployment id that this runtime never started."""


class ControlPlaneError(NodeAgentError):
    """A call to the control plane failed: unreachable, or answered an error. `status` is
    the HTTP status when there was an answer."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
