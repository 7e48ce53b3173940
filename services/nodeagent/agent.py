"""The node agent's control loop: register, heartbeat, follow assignments, run them on a
runtime, report every transition. Stops its deployments cleanly when asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from events import GpuInfo
from services.certs import ProxyCertificate
from services.nodeagent.control import ControlPlaneClient, Registration
from services.nodeagent.errors import ControlPlaneError, DeploymentError, RuntimeUnavailable
from services.nodeagent.proxy import DeploymentProxies
from services.nodeagent.runtimes.base import Assignment, Runtime, StatusCallback, StatusReport
from services.nodeagent.saved import (
    SavedRegistration,
    forget_registration,
    load_registration,
    save_registration,
)

log = logging.getLogger(__name__)

RuntimeFactory = Callable[[StatusCallback], Runtime]
"""Builds the runtime given the callback it must report through."""


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """What the node registers as. `host` is where the dispatcher will reach it;
    `proxy_cert` the PEM certificate its proxies serve (empty: plain HTTP)."""

    address: str
    host: str
    gpus: tuple[GpuInfo, ...]
    region: str = ""
    runtime: str = "process"
    proxy_cert: str = ""


class NodeAgent:
    """Runs until `stop()`; `run()` returns after every deployment was stopped and its
    `stopped` report sent (or could not be).

    Every deployment is fronted by an authenticating proxy listening on `proxy_host`
    (default: the identity's host); its ports are the host ports reported `ready`, so the
    container's own (on loopback) are never registered. With `certificate`, the proxies
    serve HTTPS with it, and it is registered (in the identity) so that the dispatcher
    accepts no other; without, plain HTTP.

    With `registration_file`, the node's registration is kept there and a restarted agent
    resumes as the same node (its token still accepted: the control plane did not revoke
    it), so its replicas need not wait for the old node to be declared lost.

    With `log_dir` (where the runtime writes each deployment's log), each proxy also
    serves its deployment's log to the control plane (`nodeagent.logstream`)."""

    def __init__(
        self,
        client: ControlPlaneClient,
        identity: AgentIdentity,
        runtime_factory: RuntimeFactory,
        *,
        poll_wait_s: float = 25.0,
        retry_s: float = 1.0,
        proxy_host: str | None = None,
        registration_file: Path | None = None,
        certificate: ProxyCertificate | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.client = client
        self.identity = replace(identity, proxy_cert=certificate.pem if certificate else "")
        self.poll_wait_s = poll_wait_s
        self.retry_s = retry_s
        self.reports: asyncio.Queue[StatusReport | None] = asyncio.Queue()
        self.runtime = runtime_factory(self.reports.put_nowait)
        self.registration: Registration | None = None
        self.proxies = DeploymentProxies(
            proxy_host or identity.host, tls=certificate.context if certificate else None,
            log_dir=log_dir,
        )  # fmt: skip
        self.registration_file = registration_file
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        self.registration = await self._register()
        log.info("registered as %s", self.registration.node_id)
        reporter = asyncio.create_task(self._report_loop(), name="reports")
        loops = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._assignment_loop(), name="assignments"),
        ]
        await self._stopping.wait()
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runtime.stop_all("node agent stopping")
        await self.runtime.aclose()
        await self.proxies.aclose()
        self.reports.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(reporter, timeout=10)

    async def _register(self) -> Registration:
        """Resume the saved registration when the control plane still accepts it, else
        register anew (and save that)."""
        resumed = await self._resume()
        if resumed is not None:
            return resumed
        registration = await self._register_anew()
        if self.registration_file is not None:
            saved = SavedRegistration(self.client.base_url, self._identity_document(), registration)
            save_registration(self.registration_file, saved)
        return registration

    def _identity_document(self) -> dict[str, object]:
        document: dict[str, object] = json.loads(json.dumps(asdict(self.identity)))
        return document  # as it reads back from the file (tuples as lists)

    async def _resume(self) -> Registration | None:
        if self.registration_file is None:
            return None
        saved = load_registration(self.registration_file)
        if saved is None or not saved.matches(self.client.base_url, self._identity_document()):
            return None
        self.client.resume(saved.registration)
        while True:
            try:
                await self.client.heartbeat()
            except ControlPlaneError as exc:
                if exc.status == 401:
                    log.info("the saved registration as %s is refused; registering anew",
                             saved.registration.node_id)  # fmt: skip
                    forget_registration(self.registration_file)
                    return None
                log.warning("resuming as %s failed, retrying: %s", saved.registration.node_id, exc)
                await asyncio.sleep(self.retry_s)
                continue
            log.info("resumed as %s", saved.registration.node_id)
            return saved.registration

    async def _register_anew(self) -> Registration:
        while True:
            try:
                return await self.client.register(
                    address=self.identity.address, host=self.identity.host,
                    gpus=self.identity.gpus, region=self.identity.region,
                    runtime=self.identity.runtime, proxy_cert=self.identity.proxy_cert,
                )  # fmt: skip
            except ControlPlaneError as exc:
                if exc.status in (400, 401, 403, 422):
                    raise  # retrying a refused registration cannot succeed
                log.warning("register failed, retrying: %s", exc)
                await asyncio.sleep(self.retry_s)

    async def _heartbeat_loop(self) -> None:
        assert self.registration is not None
        while True:
            try:
                await self.client.heartbeat()
            except ControlPlaneError as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(self.registration.heartbeat_interval_s)

    async def _assignment_loop(self) -> None:
        etag = ""
        while True:
            try:
                wait_s = self.poll_wait_s if etag else 0.0
                current = await self.client.assignments(etag, wait_s=wait_s)
            except ControlPlaneError as exc:
                log.warning("assignments failed: %s", exc)
                await asyncio.sleep(self.retry_s)
                continue
            await self._reconcile(current.deployments)
            etag = current.etag

    async def _reconcile(self, desired: tuple[Assignment, ...]) -> None:
        """Start what is assigned and not running; stop what runs and is not assigned."""
        wanted = {d.deployment_id: d for d in desired}
        running = {h.deployment_id: h for h in self.runtime.handles()}
        for deployment_id, handle in running.items():
            if deployment_id not in wanted:
                await self.runtime.stop(handle, "no longer assigned")
        for deployment_id in self.proxies.open_ids():
            if deployment_id not in wanted:
                await self.proxies.close(deployment_id)
        for deployment_id, spec in wanted.items():
            if deployment_id not in running:
                await self._start(spec)

    async def _start(self, spec: Assignment) -> None:
        """Open the deployment's proxy, then start it behind it. A runtime that pulls
        images (docker) gets the deployment's registry credentials first, when it has any."""
        try:
            if spec.registry_auth and self.runtime.name == "docker":
                credentials = await self.client.registry_credentials(spec.deployment_id)
                spec = replace(spec, credentials=credentials)
            await self.proxies.open(spec.deployment_id, spec.ports, spec.secret)
            handle = await self.runtime.start(spec)
        except (ControlPlaneError, DeploymentError, RuntimeUnavailable, OSError) as exc:
            # It cannot run here at all: say so, so it is placed elsewhere.
            await self.proxies.close(spec.deployment_id)
            self.reports.put_nowait(StatusReport(
                spec.deployment_id, spec.node_id, "failed", reason=str(exc)
            ))  # fmt: skip
            return
        self.proxies.route(spec.deployment_id, handle.host_ports)

    def _public(self, report: StatusReport) -> StatusReport | None:
        """The report as the control plane gets it: `ready` names the proxy's ports, never
        the container's; a `ready` of a deployment without a proxy is not sent."""
        if report.state != "ready":
            return report
        ports = self.proxies.public_ports(report.deployment_id)
        return None if ports is None else replace(report, host_ports=ports)

    async def _report_loop(self) -> None:
        while (raw := await self.reports.get()) is not None:
            report = self._public(raw)
            while report is not None:
                try:
                    await self.client.report(report)
                    break
                except ControlPlaneError as exc:
                    if exc.status is not None and exc.status < 500:
                        log.warning("report refused, dropped: %s", exc)
                        break
                    log.warning("report failed, retrying: %s", exc)
                    await asyncio.sleep(self.retry_s)
