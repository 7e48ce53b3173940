"""The node agent's parts: GPU discovery, and the runtimes that run deployments (the
control loop that registers, heartbeats and pulls assignments lives in `agent`)."""

from services.nodeagent.errors import (
    ControlPlaneError,
    DeploymentError,
    GpuDiscoveryError,
    GpuSourceUnavailable,
    NodeAgentError,
    RuntimeUnavailable,
    UnknownDeployment,
)
from services.nodeagent.gpus import (
    GpuDiscovery,
    discover_gpus,
    from_nvidia_smi,
    from_nvml,
    parse_configured,
    parse_nvidia_smi,
)
from services.nodeagent.runtimes import (
    Backoff,
    DeploymentHandle,
    DeploymentState,
    DockerRuntime,
    DockerRuntimeConfig,
    ProcessRuntime,
    ProcessRuntimeConfig,
    RestartPolicy,
    Runtime,
    StatusCallback,
    StatusReport,
)

__all__ = [
    "Backoff",
    "ControlPlaneError",
    "DeploymentError",
    "DeploymentHandle",
    "DeploymentState",
    "DockerRuntime",
    "DockerRuntimeConfig",
    "GpuDiscovery",
    "GpuDiscoveryError",
    "GpuSourceUnavailable",
    "NodeAgentError",
    "ProcessRuntime",
    "ProcessRuntimeConfig",
    "RestartPolicy",
    "Runtime",
    "RuntimeUnavailable",
    "StatusCallback",
    "StatusReport",
    "UnknownDeployment",
    "discover_gpus",
    "from_nvidia_smi",
    "from_nvml",
    "parse_configured",
    "parse_nvidia_smi",
]
