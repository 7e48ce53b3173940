"""Runtimes that run deployments on a node: `process` (child processes) and `docker`
(containers through the Docker Engine API), behind the `Runtime` protocol."""

from services.nodeagent.runtimes.base import (
    DeploymentEvent,
    DeploymentHandle,
    DeploymentState,
    Runtime,
    StatusCallback,
    StatusReport,
)
from services.nodeagent.runtimes.docker import (
    DockerRuntime,
    DockerRuntimeConfig,
    container_name,
    container_spec,
    device_requests,
)
from services.nodeagent.runtimes.logs import log_path, tail_lines
from services.nodeagent.runtimes.ports import deployment_env, health_url, pick_free_ports
from services.nodeagent.runtimes.process import (
    INHERITED_ENV,
    ProcessRuntime,
    ProcessRuntimeConfig,
    describe_exit,
)
from services.nodeagent.runtimes.supervise import Backoff, RestartPolicy, RunOutcome

__all__ = [
    "INHERITED_ENV",
    "Backoff",
    "DeploymentEvent",
    "DeploymentHandle",
    "DeploymentState",
    "DockerRuntime",
    "DockerRuntimeConfig",
    "ProcessRuntime",
    "ProcessRuntimeConfig",
    "RestartPolicy",
    "RunOutcome",
    "Runtime",
    "StatusCallback",
    "StatusReport",
    "container_name",
    "container_spec",
    "deployment_env",
    "describe_exit",
    "device_requests",
    "health_url",
    "log_path",
    "pick_free_ports",
    "tail_lines",
]
