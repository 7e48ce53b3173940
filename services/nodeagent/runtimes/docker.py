"""The docker runtime: each deployment as a container, through the Docker Engine API (the
docker SDK): pull, GPU device requests, published ports. Readiness is the agent polling the
health path through the published host port (images need no curl nor HEALTHCHECK); the
agent, not Docker, restarts a failed container, with the same backoff as processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docker  # type: ignore[import-untyped, unused-ignore]
import httpx
from docker.errors import DockerException, NotFound  # type: ignore[import-untyped, unused-ignore]
from docker.types import DeviceRequest  # type: ignore[import-untyped, unused-ignore]

from services.nodeagent.errors import RuntimeUnavailable
from services.nodeagent.runtimes.base import Assignment, DeploymentHandle, StatusCallback
from services.nodeagent.runtimes.health import health_client, wait_healthy, watch_run
from services.nodeagent.runtimes.logs import append_marker, log_path, tail_lines
from services.nodeagent.runtimes.ports import (
    deployment_env,
    health_url,
    host_port_map,
    pick_free_ports,
    validate_spec,
)
from services.nodeagent.runtimes.supervise import RestartPolicy, RunOutcome
from services.nodeagent.runtimes.supervising import Supervised, SupervisingRuntime

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
LABEL_PREFIX = "ai.ngpu."
LABEL_MANAGED = LABEL_PREFIX + "managed"
LABEL_DEPLOYMENT = LABEL_PREFIX + "deployment-id"
LABEL_NODE = LABEL_PREFIX + "node-id"
# Containers publish on loopback only: the agent's authenticating proxy fronts them.
LOOPBACK = "127.0.0.1"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# Docker error types, plus OSError: requests' connection errors derive from it.
_ENGINE_ERRORS = (DockerException, OSError)


def container_name(deployment_id: str) -> str:
    """`ngpu-<deployment_id>`, with characters Docker refuses in names replaced by `_`."""
    return "ngpu-" + _NAME_UNSAFE.sub("_", deployment_id)


def device_requests(spec: Assignment, gpu_device_ids: Sequence[str] | None) -> list[Any]:
    """The GPU request: these device ids when given, else `gpu_count` GPUs of any id,
    else none."""
    if gpu_device_ids is not None:
        return [DeviceRequest(device_ids=list(gpu_device_ids), capabilities=[["gpu"]])]
    if spec.gpu_count > 0:
        return [DeviceRequest(count=spec.gpu_count, capabilities=[["gpu"]])]
    return []


def container_spec(
    deployment: Assignment,
    gpu_device_ids: Sequence[str] | None,
    host_ports: Mapping[str, int],
    *,
    bind_host: str = LOOPBACK,
    restart_policy: Mapping[str, str | int] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `client.containers.create(**spec)` (or `run`): the image and
    command (empty: the image's own), the environment (`PORT` and `NGPU_PORT_<p>` name the
    container ports the app listens on), each declared port published on `bind_host` at
    its host port, the GPU device requests, labels naming the deployment and node (never
    the workspace: nodes do not know it), and the restart policy (default `no`: the agent
    restarts). Pure."""
    own_ports = {str(p): p for p in deployment.ports}
    spec: dict[str, Any] = {
        "image": deployment.image,
        "command": list(deployment.command) or None,
        "name": container_name(deployment.deployment_id),
        "detach": True,
        "init": True,  # a PID 1 that forwards SIGTERM and reaps zombies
        "environment": deployment_env(deployment, own_ports),
        "ports": {f"{p}/tcp": (bind_host, host_ports[str(p)]) for p in deployment.ports},
        "labels": {
            LABEL_MANAGED: "true",
            LABEL_DEPLOYMENT: deployment.deployment_id,
            LABEL_NODE: deployment.node_id,
        },
        "restart_policy": dict(restart_policy or {"Name": "no"}),
    }
    requests = device_requests(deployment, gpu_device_ids)
    if requests:
        spec["device_requests"] = requests
    return spec


@dataclass(frozen=True, slots=True)
class DockerRuntimeConfig:
    """Settings of the docker runtime. `base_url` None means `DOCKER_HOST`, else the
    local socket. `pull`: `missing` pulls images not present, `always` before each start,
    `never` not at all. `monitor_interval_s` is how often a container's state is read."""

    log_dir: Path
    base_url: str | None = None
    api_version: str = "auto"
    engine_timeout_s: int = 60
    bind_host: str = LOOPBACK
    pull: Literal["missing", "always", "never"] = "missing"
    restart_policy: dict[str, str | int] = field(default_factory=lambda: {"Name": "no"})
    health_timeout_s: float = 600.0
    health_interval_s: float = 0.5
    health_request_timeout_s: float = 2.0
    monitor_interval_s: float = 2.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    stop_grace_s: float = 10.0
    log_tail_lines: int = 50

    @property
    def engine_url(self) -> str:
        return self.base_url or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


@dataclass(frozen=True, slots=True)
class DockerContext:
    """What a container deployment runs with; `auth` the registry credentials its image
    is pulled with (the docker SDK's `auth_config`), None for none."""

    run_kwargs: dict[str, Any]
    log: Path
    health_url: str
    auth: dict[str, str] | None = field(default=None, repr=False)


ClientFactory = Callable[[DockerRuntimeConfig], Any]


def default_client(config: DockerRuntimeConfig) -> Any:
    """A docker SDK client for `config.engine_url`; connects (to learn the API version)."""
    return docker.DockerClient(
        base_url=config.engine_url, version=config.api_version, timeout=config.engine_timeout_s
    )


class DockerRuntime(SupervisingRuntime[DockerContext]):
    """Runs deployments as containers. `start()` raises `RuntimeUnavailable` when no
    Docker engine answers; a pull or create failure is reported `failed` and retried with
    backoff. A failed run's container logs are appended to `<log_dir>/<id>.log` before
    the container is removed. Use as an async context manager, or call `aclose()`."""

    def __init__(
        self,
        config: DockerRuntimeConfig,
        on_status: StatusCallback,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        client_factory: ClientFactory = default_client,
    ) -> None:
        super().__init__(on_status, config.restart)
        self._config = config
        self._client_factory = client_factory
        self._docker: Any = None
        self._http = health_client(transport, config.health_request_timeout_s)

    @property
    def name(self) -> str:
        return "docker"

    async def __aenter__(self) -> DockerRuntime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every deployment, then close the clients."""
        await self.stop_all()
        await self._http.aclose()
        if self._docker is not None:
            await asyncio.to_thread(self._docker.close)

    async def ping(self) -> str:
        """The engine's version string. Raises `RuntimeUnavailable` naming the address."""
        client = await asyncio.to_thread(self._connect)
        try:
            version = await asyncio.to_thread(client.version)
        except _ENGINE_ERRORS as exc:
            raise self._unavailable(exc) from exc
        return str(version.get("Version", "unknown"))

    def _connect(self) -> Any:
        if self._docker is None:
            try:
                client = self._client_factory(self._config)
                client.ping()
            except _ENGINE_ERRORS as exc:
                raise self._unavailable(exc) from exc
            self._docker = client
        return self._docker

    def _unavailable(self, exc: BaseException) -> RuntimeUnavailable:
        return RuntimeUnavailable(f"no Docker engine answers at {self._config.engine_url}: {exc}")

    async def _accept(
        self, spec: Assignment, gpu_device_ids: Sequence[str] | None
    ) -> tuple[DeploymentHandle, DockerContext]:
        validate_spec(spec, needs_command=False)
        await asyncio.to_thread(self._connect)
        in_use = {p for h in self.handles() for p in h.host_ports.values()}
        ports = pick_free_ports(len(spec.ports), self._config.bind_host, exclude=in_use)
        host_ports = host_port_map(spec.ports, ports)
        handle = DeploymentHandle(spec.deployment_id, spec.node_id, host_ports)
        self._config.log_dir.mkdir(parents=True, exist_ok=True)
        kwargs = container_spec(
            spec,
            gpu_device_ids,
            host_ports,
            bind_host=self._config.bind_host,
            restart_policy=self._config.restart_policy,
        )
        url = health_url(self._config.bind_host, host_ports[str(spec.ports[0])], spec.health_path)
        auth = spec.credentials.auth_config() if spec.credentials else None
        return handle, DockerContext(
            kwargs, log_path(self._config.log_dir, spec.deployment_id), url, auth
        )

    async def _run_once(self, record: Supervised[DockerContext], attempt: int) -> RunOutcome:
        context = record.context
        self._report(record, "starting", attempt=attempt)
        append_marker(context.log, f"start attempt {attempt}: image {context.run_kwargs['image']}")
        try:
            container = await asyncio.to_thread(self._create, context.run_kwargs, context.auth)
        except _ENGINE_ERRORS as exc:
            reason = f"cannot run image {context.run_kwargs['image']!r}: {exc}"
            append_marker(context.log, reason)
            return RunOutcome(reason, log_tail=self._tail(context.log))
        try:
            outcome = await self._watch(record, container, attempt)
        finally:
            await asyncio.to_thread(self._dispose, container, context.log)
        return RunOutcome(outcome.reason, outcome.ready_for_s, self._tail(context.log))

    def _create(self, kwargs: dict[str, Any], auth: dict[str, str] | None = None) -> Any:
        """Pull as configured, remove a leftover container of the same name, create and
        start. Blocking: runs in a worker thread.

        With `auth`, the image is pulled before every start whatever `pull` says: the
        registry checks these credentials each time, so an image cached on the node by
        someone else's pull is not run on the strength of that. The credentials go to the
        engine in the pull's `X-Registry-Auth` header only: no command line, no file."""
        client = self._connect()
        image = kwargs["image"]
        if auth is not None:
            client.images.pull(image, auth_config=auth)
        elif self._config.pull == "always":
            client.images.pull(image)
        elif self._config.pull == "missing":
            try:
                client.images.get(image)
            except NotFound:
                client.images.pull(image)
        with contextlib.suppress(NotFound):
            client.containers.get(kwargs["name"]).remove(force=True)
        container = client.containers.create(**kwargs)
        container.start()
        return container

    async def _watch(
        self, record: Supervised[DockerContext], container: Any, attempt: int
    ) -> RunOutcome:
        context = record.context

        def ready() -> None:
            append_marker(context.log, f"healthy at {context.health_url}")
            self._report(
                record, "ready", attempt=attempt, host_ports=dict(record.handle.host_ports)
            )

        return await watch_run(
            self._wait_exit(container),
            record.stop_requested,
            wait_healthy(self._http, context.health_url, self._config.health_interval_s),
            health_timeout_s=self._config.health_timeout_s,
            url=context.health_url,
            on_ready=ready,
        )

    async def _wait_exit(self, container: Any) -> str:
        """Poll the container until it is no longer running; describe how it ended."""
        while True:
            await asyncio.sleep(self._config.monitor_interval_s)
            try:
                await asyncio.to_thread(container.reload)
            except NotFound:
                return "container disappeared"
            except _ENGINE_ERRORS as exc:
                return f"docker engine error: {exc}"
            state = container.attrs.get("State", {})
            if state.get("Status") not in ("created", "running", "restarting"):
                code = state.get("ExitCode")
                oom = " (out of memory)" if state.get("OOMKilled") else ""
                return f"container {state.get('Status')} with exit code {code}{oom}"

    def _dispose(self, container: Any, log: Path) -> None:
        """Stop the container, keep its output in the log file, remove it. Blocking."""
        with contextlib.suppress(*_ENGINE_ERRORS):
            container.stop(timeout=int(self._config.stop_grace_s))
        with contextlib.suppress(*_ENGINE_ERRORS):
            output = container.logs(stdout=True, stderr=True, tail=1000)
            with log.open("ab") as f:
                f.write(output)
        with contextlib.suppress(*_ENGINE_ERRORS):
            container.remove(force=True)

    def _on_failed(
        self, record: Supervised[DockerContext], outcome: RunOutcome, delay: float | None
    ) -> None:
        then = "giving up" if delay is None else f"restarting in {delay:g} s"
        append_marker(record.context.log, f"failed: {outcome.reason}; {then}")

    def _tail(self, log: Path) -> tuple[str, ...]:
        return tail_lines(log, self._config.log_tail_lines)
