"""The part of a runtime that does not depend on how a deployment runs: the table of
deployments, idempotent start, stop, status, and status reports. A runtime subclasses
`SupervisingRuntime` and supplies `_accept` (validate, publish ports) and `_run_once`."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from services.nodeagent.errors import UnknownDeployment
from services.nodeagent.runtimes.base import (
    Assignment,
    DeploymentHandle,
    DeploymentState,
    StatusCallback,
    StatusReport,
)
from services.nodeagent.runtimes.supervise import RestartPolicy, RunOutcome, supervise

log = logging.getLogger(__name__)

C = TypeVar("C")


class Supervised(Generic[C]):
    """One deployment and its supervision; touched only from the event loop. `context`
    is the runtime's own data about it (environment, log file, container name...)."""

    __slots__ = ("context", "handle", "spec", "state", "stop_requested", "stopping", "task")

    def __init__(self, handle: DeploymentHandle, spec: Assignment, context: C) -> None:
        self.handle = handle
        self.spec = spec
        self.context = context
        self.state: DeploymentState = "starting"
        self.stop_requested = asyncio.Event()
        self.stopping = False
        self.task: asyncio.Task[None] | None = None


class SupervisingRuntime(ABC, Generic[C]):
    """Implements the `Runtime` protocol around `_accept` and `_run_once`."""

    def __init__(self, on_status: StatusCallback, restart: RestartPolicy) -> None:
        self._on_status = on_status
        self._restart = restart
        self._deployments: dict[str, Supervised[C]] = {}

    @property
    @abstractmethod
    def name(self) -> str:
        """The runtime's name as a node registers it."""

    @abstractmethod
    async def _accept(
        self, spec: Assignment, gpu_device_ids: Sequence[str] | None
    ) -> tuple[DeploymentHandle, C]:
        """Validate `spec` (raise `DeploymentError`), choose host ports, build the context."""

    @abstractmethod
    async def _run_once(self, record: Supervised[C], attempt: int) -> RunOutcome:
        """Start the deployment, report `starting` and `ready`, and return when it ended or
        `record.stop_requested` is set, leaving nothing of it running."""

    def _on_failed(self, record: Supervised[C], outcome: RunOutcome, delay: float | None) -> None:
        """Hook called before a failure is reported (e.g. to note it in the log)."""

    async def start(
        self, spec: Assignment, gpu_device_ids: Sequence[str] | None = None
    ) -> DeploymentHandle:
        """See `Runtime.start`."""
        current = self._deployments.get(spec.deployment_id)
        if current is not None and not current.stopping:
            return current.handle
        handle, context = await self._accept(spec, gpu_device_ids)
        record = Supervised(handle, spec, context)
        self._deployments[spec.deployment_id] = record
        record.task = asyncio.create_task(
            self._supervise(record), name=f"ngpu-{self.name}-{spec.deployment_id}"
        )
        return handle

    async def stop(self, handle: DeploymentHandle, reason: str = "stopped") -> None:
        """See `Runtime.stop`."""
        record = self._record(handle)
        first = not record.stopping
        record.stopping = True
        record.stop_requested.set()
        if record.task is not None:
            await asyncio.shield(record.task)
        if first:
            self._report(record, "stopped", reason=reason)

    def status(self, handle: DeploymentHandle) -> DeploymentState:
        """See `Runtime.status`."""
        return self._record(handle).state

    def handles(self) -> tuple[DeploymentHandle, ...]:
        """See `Runtime.handles`."""
        return tuple(r.handle for r in self._deployments.values() if not r.stopping)

    async def stop_all(self, reason: str = "node agent stopping") -> None:
        """See `Runtime.stop_all`."""
        await asyncio.gather(*(self.stop(h, reason) for h in self.handles()))

    def _record(self, handle: DeploymentHandle) -> Supervised[C]:
        record = self._deployments.get(handle.deployment_id)
        if record is None:
            raise UnknownDeployment(f"no deployment {handle.deployment_id!r} on this runtime")
        return record

    async def _supervise(self, record: Supervised[C]) -> None:
        def failed(attempt: int, outcome: RunOutcome, delay: float | None) -> None:
            self._on_failed(record, outcome, delay)
            self._report(
                record,
                "failed",
                attempt=attempt,
                reason=outcome.reason,
                log_tail=outcome.log_tail,
                retry_in_s=delay,
            )

        try:
            await supervise(
                lambda attempt: self._run_once(record, attempt),
                self._restart,
                record.stop_requested,
                failed,
            )
        except Exception as exc:  # a bug here must not leave the deployment unreported
            log.exception("supervising deployment %s failed", record.handle.deployment_id)
            self._report(record, "failed", reason=f"node agent error: {exc!r}")

    def _report(self, record: Supervised[C], state: DeploymentState, **fields: Any) -> None:
        record.state = state
        handle = record.handle
        report = StatusReport(
            deployment_id=handle.deployment_id,
            node_id=handle.node_id,
            state=state,
            **fields,
        )
        try:
            self._on_status(report)
        except Exception:  # the callback is the agent's; its bug must not stop supervision
            log.exception("status callback failed for %s", report)
