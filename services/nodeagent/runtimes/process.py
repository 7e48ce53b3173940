"""The process runtime: a deployment's start command as a child process of the agent, for
hosts without Docker and for tests. Each run gets its own process group, so that stopping
it also stops whatever it started."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.nodeagent.runtimes.base import Assignment, DeploymentHandle, StatusCallback
from services.nodeagent.runtimes.health import health_client, wait_healthy, watch_run
from services.nodeagent.runtimes.logs import append_marker, log_path, rotate_if_large, tail_lines
from services.nodeagent.runtimes.ports import (
    deployment_env,
    health_url,
    host_port_map,
    pick_free_ports,
    validate_spec,
)
from services.nodeagent.runtimes.supervise import RestartPolicy, RunOutcome
from services.nodeagent.runtimes.supervising import Supervised, SupervisingRuntime

# What a child inherits from the agent's environment. An allow-list, because the agent's
# environment holds its own secrets (NGPU_NODE_JOIN_TOKEN, the node token...).
INHERITED_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
)


_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ProcessRuntimeConfig:
    """Settings of the process runtime.

    `bind_host` is where ports are chosen and what the child is told to listen on
    (`NGPU_BIND_HOST`); `cwd` the children's working directory (None: the agent's);
    `health_timeout_s` bounds each start; `stop_grace_s` is the time between SIGTERM and
    SIGKILL; `log_tail_lines` the lines of log a failure report carries."""

    log_dir: Path
    bind_host: str = "127.0.0.1"
    cwd: Path | None = None
    inherit_env: tuple[str, ...] = INHERITED_ENV
    health_timeout_s: float = 120.0
    health_interval_s: float = 0.1
    health_request_timeout_s: float = 2.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    stop_grace_s: float = 10.0
    log_tail_lines: int = 50
    log_max_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProcessContext:
    """What a process deployment runs with: its full environment, log file, health URL."""

    env: dict[str, str]
    log: Path
    health_url: str


class ProcessRuntime(SupervisingRuntime[ProcessContext]):
    """Runs each deployment's `command` with `PORT`, `NGPU_PORT_<containerPort>`,
    `NGPU_DEPLOYMENT_ID`, `NGPU_NODE_ID` and `NGPU_BIND_HOST` set over
    its `env`; `CUDA_VISIBLE_DEVICES` when GPU ids are given. Output goes to
    `<log_dir>/<deployment_id>.log`. Restarts follow `config.restart`. Use as an async
    context manager, or call `aclose()`, to stop everything and release the HTTP client."""

    def __init__(
        self,
        config: ProcessRuntimeConfig,
        on_status: StatusCallback,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(on_status, config.restart)
        self._config = config
        self._client = health_client(transport, config.health_request_timeout_s)

    @property
    def name(self) -> str:
        return "process"

    async def __aenter__(self) -> ProcessRuntime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every deployment, then close the health-check client."""
        await self.stop_all()
        await self._client.aclose()

    def log_file(self, handle: DeploymentHandle) -> Path:
        """The deployment's log file (its output and the agent's `[ngpu ...]` notes)."""
        return self._record(handle).context.log

    def log_tail(self, handle: DeploymentHandle, lines: int | None = None) -> tuple[str, ...]:
        """The last `lines` lines of the deployment's log (default: `log_tail_lines`)."""
        count = self._config.log_tail_lines if lines is None else lines
        return tail_lines(self.log_file(handle), count)

    async def _accept(
        self, spec: Assignment, gpu_device_ids: Sequence[str] | None
    ) -> tuple[DeploymentHandle, ProcessContext]:
        validate_spec(spec, needs_command=True)
        in_use = {p for h in self.handles() for p in h.host_ports.values()}
        ports = pick_free_ports(len(spec.ports), self._config.bind_host, exclude=in_use)
        host_ports = host_port_map(spec.ports, ports)
        handle = DeploymentHandle(spec.deployment_id, spec.node_id, host_ports)
        self._config.log_dir.mkdir(parents=True, exist_ok=True)
        context = ProcessContext(
            env=self._environment(spec, host_ports, gpu_device_ids),
            log=log_path(self._config.log_dir, spec.deployment_id),
            health_url=health_url(
                self._config.bind_host, host_ports[str(spec.ports[0])], spec.health_path
            ),
        )
        return handle, context

    def _environment(
        self,
        spec: Assignment,
        host_ports: dict[str, int],
        gpu_device_ids: Sequence[str] | None,
    ) -> dict[str, str]:
        env = {k: os.environ[k] for k in self._config.inherit_env if k in os.environ}
        env.update(deployment_env(spec, host_ports))
        env["NGPU_BIND_HOST"] = self._config.bind_host
        if gpu_device_ids is not None:
            env["CUDA_VISIBLE_DEVICES"] = env["NVIDIA_VISIBLE_DEVICES"] = ",".join(gpu_device_ids)
        return env

    async def _run_once(self, record: Supervised[ProcessContext], attempt: int) -> RunOutcome:
        log = record.context.log
        self._report(record, "starting", attempt=attempt)
        rotate_if_large(log, self._config.log_max_bytes)
        append_marker(log, f"start attempt {attempt}: {shlex.join(record.spec.command)}")
        try:
            proc = await self._spawn(record)
        except OSError as exc:
            reason = f"cannot start {record.spec.command[0]!r}: {exc}"
            append_marker(log, reason)
            return RunOutcome(reason, log_tail=self._tail(log))
        try:
            outcome = await self._watch(record, proc, attempt)
        except BaseException:
            # Cancelled (the loop is closing): leave no orphan behind, without awaiting.
            _signal_group(proc.pid, signal.SIGKILL)
            raise
        await self._terminate(proc)
        if record.stop_requested.is_set():
            append_marker(log, "stopped on request")
        return RunOutcome(outcome.reason, outcome.ready_for_s, self._tail(log))

    async def _spawn(self, record: Supervised[ProcessContext]) -> asyncio.subprocess.Process:
        with record.context.log.open("ab") as log:
            return await asyncio.create_subprocess_exec(
                *record.spec.command,
                env=record.context.env,
                cwd=self._config.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals the group
                preexec_fn=die_with_parent,
            )

    async def _watch(
        self, record: Supervised[ProcessContext], proc: asyncio.subprocess.Process, attempt: int
    ) -> RunOutcome:
        context = record.context

        async def exited() -> str:
            return describe_exit(await proc.wait())

        def ready() -> None:
            append_marker(context.log, f"healthy at {context.health_url}")
            self._report(
                record, "ready", attempt=attempt, host_ports=dict(record.handle.host_ports)
            )

        return await watch_run(
            exited(),
            record.stop_requested,
            wait_healthy(self._client, context.health_url, self._config.health_interval_s),
            health_timeout_s=self._config.health_timeout_s,
            url=context.health_url,
            on_ready=ready,
        )

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the run's process group; SIGKILL the group once the leader has exited or
        the grace period has passed, so that no grandchild outlives the run."""
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), self._config.stop_grace_s)
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()

    def _on_failed(
        self, record: Supervised[ProcessContext], outcome: RunOutcome, delay: float | None
    ) -> None:
        then = "giving up" if delay is None else f"restarting in {delay:g} s"
        append_marker(record.context.log, f"failed: {outcome.reason}; {then}")

    def _tail(self, log: Path) -> tuple[str, ...]:
        return tail_lines(log, self._config.log_tail_lines)


def die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the agent dies, so an agent
    killed outright (SIGKILL, OOM) leaves no replica serving behind the scheduler's back.
    Elsewhere, or where prctl is unavailable, nothing happens."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def describe_exit(returncode: int) -> str:
    """`exited with code N`, or `killed by SIGNAME` for a negative return code."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _signal_group(pgid: int, signum: int) -> None:
    # The group outlives its leader while any member lives; once empty, nothing to do.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
