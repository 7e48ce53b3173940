"""The agent's authenticating reverse proxy: the only way into a deployment.

Each declared port of each deployment gets a listener on the node's public address; the
container itself listens on loopback. A call is forwarded only when it carries a valid,
fresh signature under the deployment's secret (`services.callsign`); anything else gets
401 and never reaches the container. The listener's port, not the container's, is what
the agent reports as the deployment's host port, so it is the only one the dispatcher
knows. The listeners serve HTTPS with the certificate the agent registered (the
dispatcher accepts no other: `services.certs`), or plain HTTP when the agent runs without
one. A call whose caller hangs up is given up: the proxy closes its connection to the
container too, so the container sees the call abandoned.

One path is the agent's own: `LOGS_PATH`, signed with the deployment's log key (derived
from its secret: `callsign.logs_secret`), answers the deployment's log
(`nodeagent.logstream`) to the control plane. A call to that path signed as a customer's
call is forwarded to the container like any other."""

from __future__ import annotations

import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from services.callsign import (
    LOGS_PATH,
    NONCE_HEADER,
    PROXY_ERROR_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    logs_secret,
    verify,
)
from services.nodeagent.logstream import serve_log
from services.nodeagent.runtimes.logs import log_path

log = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
    )
)  # fmt: skip
_NOT_FORWARDED = _HOP_BY_HOP | {
    h.lower() for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER)
}
_CHUNK = 64 * 1024
MAX_BODY_BYTES = 64 << 20


@dataclass(slots=True)
class _Front:
    """The listeners of one deployment: container port -> (proxy port, upstream port)."""

    secret: str
    runners: list[web.AppRunner] = field(default_factory=list)
    public: dict[str, int] = field(default_factory=dict)
    upstream: dict[str, int] = field(default_factory=dict)


class DeploymentProxies:
    """Opens, routes and closes the proxies of a node's deployments. Use from the event
    loop only; `aclose()` closes every listener and the upstream client. With `tls` (a
    server context holding the certificate the agent registered), every listener serves
    HTTPS only."""

    def __init__(
        self,
        bind_host: str,
        *,
        upstream_host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.bind_host = bind_host
        self.log_dir = log_dir
        """Where the runtime writes each deployment's log (`runtimes.logs.log_path`),
        served at `LOGS_PATH` to reads signed with the deployment's log key; None: none."""
        self.upstream_host = upstream_host
        self.tls = tls
        self._fronts: dict[str, _Front] = {}
        self._session: aiohttp.ClientSession | None = None
        self._replays = ReplayGuard()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=False
            )
        return self._session

    async def open(self, deployment_id: str, ports: tuple[int, ...], secret: str) -> dict[str, int]:
        """Listen for `deployment_id`'s declared `ports`; answers `{"<port>": proxyPort}`.
        Idempotent: an open deployment keeps its ports."""
        front = self._fronts.get(deployment_id)
        if front is not None:
            return dict(front.public)
        front = _Front(secret)
        self._fronts[deployment_id] = front
        try:
            for port in ports:
                # A caller that hangs up (the dispatcher aborting a cancelled task's call)
                # cancels its handler, which closes the connection to the container.
                runner = web.AppRunner(
                    self._app(deployment_id, str(port)),
                    access_log=None,
                    handle_signals=False,
                    handler_cancellation=True,
                )
                await runner.setup()
                front.runners.append(runner)
                site = web.TCPSite(
                    runner, self.bind_host, 0, reuse_address=True, ssl_context=self.tls
                )
                await site.start()
                front.public[str(port)] = _bound_port(runner)
        except BaseException:
            await self.close(deployment_id)
            raise
        return dict(front.public)

    def route(self, deployment_id: str, upstream: dict[str, int]) -> None:
        """Where the container listens: `{"<declared port>": loopback port}`."""
        if front := self._fronts.get(deployment_id):
            front.upstream = dict(upstream)

    def public_ports(self, deployment_id: str) -> dict[str, int] | None:
        """The proxy's ports of an open deployment (what the agent reports)."""
        front = self._fronts.get(deployment_id)
        return dict(front.public) if front is not None else None

    def open_ids(self) -> tuple[str, ...]:
        return tuple(self._fronts)

    async def close(self, deployment_id: str) -> None:
        front = self._fronts.pop(deployment_id, None)
        if front is None:
            return
        for runner in front.runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()

    async def aclose(self) -> None:
        for deployment_id in list(self._fronts):
            await self.close(deployment_id)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _app(self, deployment_id: str, port: str) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._forward(deployment_id, port, request)

        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    async def _forward(
        self, deployment_id: str, port: str, request: web.Request
    ) -> web.StreamResponse:
        front = self._fronts.get(deployment_id)
        if front is not None and _log_read(front.secret, request):
            if not self._replays.first_use(request.headers):
                return _refusal(401, "unauthorized")
            log_file = log_path(self.log_dir, deployment_id) if self.log_dir else None
            return await serve_log(request, log_file)
        if front is None or not verify(
            front.secret, request.method, request.raw_path, request.headers
        ):
            return _refusal(401, "unauthorized")
        if not self._replays.first_use(request.headers):
            return _refusal(401, "unauthorized")  # a signed call seen before: a replay
        upstream_port = front.upstream.get(port)
        if upstream_port is None:
            return _refusal(502, "upstream-unreachable")
        body = await request.read()
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED
        )
        url = f"http://{self.upstream_host}:{upstream_port}{request.raw_path}"
        try:
            async with self._client().request(
                request.method, url, data=body, headers=headers, allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                compress=None,
            ) as upstream:  # fmt: skip
                return await _relay(request, upstream)
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
            log.warning("deployment %s: upstream unreachable: %s", deployment_id, exc)
            return _refusal(502, "upstream-unreachable")


async def _relay(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    headers = CIMultiDict(
        (k, v)
        for k, v in upstream.headers.items()
        if k.lower() not in _HOP_BY_HOP and k.lower() != PROXY_ERROR_HEADER.lower()
    )
    if upstream.content_length is not None:
        body = await upstream.read()
        return web.Response(status=upstream.status, reason=upstream.reason, body=body,
                            headers=headers)  # fmt: skip
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    await response.prepare(request)
    async for chunk in upstream.content.iter_chunked(_CHUNK):
        await response.write(chunk)
    await response.write_eof()
    return response


def _log_read(secret: str, request: web.Request) -> bool:
    """Whether the request reads the deployment's log, signed with its log key."""
    if request.path != LOGS_PATH or request.method != "GET":
        return False
    return verify(logs_secret(secret), "GET", request.raw_path, request.headers)


def _refusal(status: int, code: str) -> web.Response:
    return web.Response(status=status, text=code + "\n", headers={PROXY_ERROR_HEADER: code})


def _bound_port(runner: web.AppRunner) -> int:
    return int(runner.addresses[-1][1])
