"""Request and response bodies of the management and node APIs, with their validation."""

from __future__ import annotations

import ipaddress
import re
import ssl
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.certs import MAX_PEM_CHARS, certificate_der
from services.scheduler.gpu import normalize_gpu_type

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_NODE_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")

Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class GpuRequest(Strict):
    type: str = Field(min_length=1, max_length=64)
    count: int = Field(ge=1, le=16)

    @field_validator("type")
    @classmethod
    def _normalized(cls, value: str) -> str:
        normalized = normalize_gpu_type(value)
        if not normalized:
            raise ValueError("must name a GPU type, e.g. RTX4090")
        return normalized


class Replicas(Strict):
    min: int = Field(1, ge=0, le=1000)
    max: int = Field(1, ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.max < self.min:
            raise ValueError("max must be at least min")
        return self


class Scaling(Strict):
    """How the scheduler scales a workspace between its replicas' min and max."""

    metric: Literal["queue_delay", "in_flight"] = "queue_delay"
    target: float | None = Field(
        None, gt=0, le=86_400,
        description="queue_delay: seconds (default 4); in_flight: tasks per replica "
        "(default the workspace's concurrency).",
    )  # fmt: skip
    scale_up_after_s: float = Field(0.0, ge=0, le=86_400)
    scale_down_after_s: float = Field(60.0, ge=0, le=86_400)

    def resolved_target(self, concurrency: int) -> float:
        if self.target is not None:
            return self.target
        return 4.0 if self.metric == "queue_delay" else float(concurrency)


def _unicode(text: str) -> bool:
    """Whether `text` is valid Unicode: JSON can carry a lone surrogate (`"\\ud800"`), which
    no event can (encoding it was a 500)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name")
        if not _unicode(value):
            raise ValueError(f"the value of {name} is not valid Unicode")
    return env


class RegistryAuth(Strict):
    """Credentials of the registry a workspace's image is pulled from (docker runtime).
    Sealed before anything is published (`services.secretbox`); never answered back."""

    server: str = Field(min_length=1, max_length=512)
    username: str = Field(min_length=1, max_length=512)
    password: str = Field(min_length=1, max_length=8192, repr=False)

    @field_validator("server", "username", "password")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not _unicode(value) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("must be valid Unicode without control characters")
        return value


class WorkspaceCreate(Strict):
    """`POST /v1/workspaces`. `command` is a shell string (run through `sh -c`) or argv."""

    name: str
    image: str = Field(min_length=1, max_length=512)
    command: str | list[str]
    gpu: GpuRequest
    ports: list[Port] = Field(min_length=1, max_length=16)
    env: dict[str, str] = Field(default_factory=dict, max_length=256)
    health_path: str = Field("/health", max_length=512)
    replicas: Replicas = Field(default_factory=Replicas)
    timeout_s: float = Field(600.0, gt=0, le=86_400)
    concurrency: int = Field(1, ge=1, le=1024)
    retry_on_timeout: bool = False
    max_priority: int = Field(0, ge=0, le=9)
    scaling: Scaling = Field(default_factory=Scaling)
    registry_auth: RegistryAuth | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "must be 1-63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
            )
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | list[str]) -> str | list[str]:
        parts = [value] if isinstance(value, str) else value
        if not parts or any(not p.strip() for p in parts):
            raise ValueError("must be a non-empty string or a list of non-empty strings")
        if not all(_unicode(p) for p in parts):
            raise ValueError("must be valid Unicode")
        return value

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("ports must be unique")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_env(value)

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, value: str) -> str:
        if not value.startswith("/") or any(ord(c) < 0x21 or c in "\\" for c in value):
            raise ValueError("must be an absolute path without spaces or control characters")
        return value

    def argv(self) -> tuple[str, ...]:
        if isinstance(self.command, str):
            return ("sh", "-c", self.command)
        return tuple(self.command)


class WorkspaceUpdate(Strict):
    """`PATCH /v1/workspaces/{id}`: any of the settings (replicas, timeout_s,
    retry_on_timeout, max_priority, scaling) and of the template its replicas run (image,
    command, env, gpu, ports, health_path, concurrency: a change of any is a new
    revision, rolled out replica by replica)."""

    replicas: Replicas | None = None
    env: dict[str, str] | None = Field(None, max_length=256)
    timeout_s: float | None = Field(None, gt=0, le=86_400)
    retry_on_timeout: bool | None = None
    max_priority: int | None = Field(None, ge=0, le=9)
    scaling: Scaling | None = None
    image: str | None = Field(None, min_length=1, max_length=512)
    command: str | list[str] | None = None
    gpu: GpuRequest | None = None
    ports: list[Port] | None = Field(None, min_length=1, max_length=16)
    health_path: str | None = Field(None, max_length=512)
    concurrency: int | None = Field(None, ge=1, le=1024)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else _check_env(value)

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | list[str] | None) -> str | list[str] | None:
        return None if value is None else WorkspaceCreate._command(value)

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None else WorkspaceCreate._unique_ports(value)

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, value: str | None) -> str | None:
        return None if value is None else WorkspaceCreate._health_path(value)

    def argv(self) -> tuple[str, ...] | None:
        if self.command is None:
            return None
        return ("sh", "-c", self.command) if isinstance(self.command, str) else tuple(self.command)


class GpuInfoIn(Strict):
    type: str = Field(min_length=1, max_length=64)
    memory_mb: int = Field(0, ge=0, le=10_000_000)


class NodeRegister(Strict):
    """`POST /v1/nodes/register`. `host` is where the dispatcher will reach this node;
    `proxy_cert` the one PEM certificate its proxies serve (the dispatcher will accept no
    other there), absent or empty when they serve plain HTTP."""

    address: str
    host: str
    gpus: list[GpuInfoIn] = Field(max_length=64)
    region: str = Field("", max_length=64)
    runtime: Literal["process", "docker"] = "process"
    proxy_cert: str = Field("", max_length=MAX_PEM_CHARS)

    @field_validator("proxy_cert")
    @classmethod
    def _proxy_cert(cls, value: str) -> str:
        # Stored as read back from its DER: one canonical PEM, nothing around it.
        return ssl.DER_cert_to_PEM_cert(certificate_der(value)) if value.strip() else ""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _NODE_ADDRESS.match(value):
            raise ValueError("must be a 0x-prefixed, 40-hex-digit address")
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            if _HOSTNAME.match(value):
                return value.lower()
        raise ValueError("must be an IP address or a DNS name (no scheme, port or path)")


class Heartbeat(Strict):
    # Bounded: the event codec holds 64-bit integers (a larger one was a 500).
    in_flight: int = Field(0, ge=0, le=1_000_000)


class DeploymentStatus(Strict):
    """A node agent's report on one of its deployments."""

    state: Literal["starting", "ready", "failed", "stopped"]
    host_ports: dict[str, Port] = Field(default_factory=dict)
    reason: str = Field("", max_length=8192)
