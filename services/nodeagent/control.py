"""The node agent's HTTP client of the control plane (register, heartbeat, assignments,
deployment reports). All I/O goes through one httpx client whose transport tests may
replace with a real local app."""

from __future__ import annotations

import ssl
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from events import GpuInfo
from services.nodeagent.errors import ControlPlaneError
from services.nodeagent.runtimes.base import Assignment, RegistryCredentials, StatusReport


@dataclass(frozen=True, slots=True)
class Registration:
    node_id: str
    token: str
    heartbeat_interval_s: float
    lost_after_s: float


@dataclass(frozen=True, slots=True)
class Assignments:
    etag: str
    deployments: tuple[Assignment, ...]


class ControlPlaneClient:
    """Talks to `base_url`. `register` uses the join token; every later call the node's
    own token. Failures raise `ControlPlaneError` (with the HTTP status when there is one).
    `verify`: how an https control plane's certificate is checked (default: the system's
    CAs; a context from `services.certs.trusting` for the operator's own CA or certificate)."""

    def __init__(
        self,
        base_url: str,
        join_token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 10.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._join_token = join_token
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), transport=transport, timeout=timeout_s, verify=verify
        )
        self.registration: Registration | None = None

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def resume(self, registration: Registration) -> None:
        """Act as the node `registration` names (one registered earlier), without
        registering: the next call with its token says whether it is still valid."""
        self.registration = registration

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            response = await self._client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ControlPlaneError(f"{method} {path}: {exc!r}") from exc
        if response.status_code >= 400:
            raise ControlPlaneError(
                f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}",
                status=response.status_code,
            )
        return response

    def _node(self) -> Registration:
        if self.registration is None:
            raise ControlPlaneError("the node is not registered")
        return self.registration

    async def register(
        self, *, address: str, host: str, gpus: tuple[GpuInfo, ...], region: str, runtime: str,
        proxy_cert: str = "",
    ) -> Registration:  # fmt: skip
        body: dict[str, Any] = {
            "address": address,
            "host": host,
            "gpus": [asdict(g) for g in gpus],
            "region": region,
            "runtime": runtime,
        }
        if proxy_cert:  # absent, not empty, so that a control plane older than it accepts
            body["proxy_cert"] = proxy_cert
        data = (await self._call("POST", "/v1/nodes/register", self._join_token, json=body)).json()
        self.registration = Registration(
            data["node_id"], data["token"], data["heartbeat_interval_s"], data["lost_after_s"]
        )
        return self.registration

    async def heartbeat(self) -> str:
        """Returns the etag of the node's assignments as the control plane sees them."""
        node = self._node()
        path = f"/v1/nodes/{node.node_id}/heartbeat"
        response = await self._call("POST", path, node.token, json={})
        etag: str = response.json()["assignments_etag"]
        return etag

    async def assignments(self, etag: str = "", wait_s: float = 0.0) -> Assignments:
        """The deployments this node should run; with `etag`, waits up to `wait_s` for a
        change (a long poll)."""
        node = self._node()
        response = await self._call(
            "GET",
            f"/v1/nodes/{node.node_id}/assignments",
            node.token,
            params={"etag": etag, "wait": wait_s},
            timeout=wait_s + 10.0,
        )
        data = response.json()
        try:
            deployments = tuple(Assignment.from_document(d) for d in data["deployments"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlPlaneError(f"malformed assignments: {exc!r}") from exc
        return Assignments(data["etag"], deployments)

    async def report(self, report: StatusReport) -> None:
        node = self._node()
        body = {
            "state": report.state,
            "host_ports": report.host_ports,
            "reason": report.full_reason(),
        }
        path = f"/v1/nodes/{node.node_id}/deployments/{report.deployment_id}/status"
        await self._call("POST", path, node.token, json=body)

    async def registry_credentials(self, deployment_id: str) -> RegistryCredentials:
        """The registry credentials of one of this node's deployments (the control plane
        answers them to the node it is assigned to only)."""
        node = self._node()
        path = f"/v1/nodes/{node.node_id}/deployments/{deployment_id}/registry-auth"
        data = (await self._call("GET", path, node.token)).json()
        try:
            return RegistryCredentials(
                str(data["server"]), str(data["username"]), str(data["password"])
            )
        except (KeyError, TypeError) as exc:
            raise ControlPlaneError("malformed registry credentials") from exc
