"""`/metrics` in Prometheus's text format: the admin token (`Authorization: Bearer`) is
required unless `NGPU_METRICS_PUBLIC=true`. `metrics_app` is the small server of
`NGPU_METRICS_PORT` (`/metrics`, `/healthz`, `/readyz`), for processes without an
ingress."""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.health import Health
from services.metrics import lag
from services.metrics.collector import StateCollector

_collector = StateCollector()
REGISTRY.register(_collector)


class MetricsEndpoint:
    """Answers a scrape: 401 without the admin token (unless `public`), else the metrics,
    consumer lags refreshed first."""

    def __init__(self, admin_token: str | None, *, public: bool) -> None:
        self.admin_token = admin_token
        self.public = public

    def allowed(self, authorization: str | None) -> bool:
        if self.public:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        return (
            self.admin_token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(token.strip().encode(), self.admin_token.encode())
        )

    async def __call__(self, request: Request) -> Response:
        if not self.allowed(request.headers.get("authorization")):
            body = {"error": {"code": "unauthorized", "message": "the admin token is not "
                              "valid", "field": "Authorization"}}  # fmt: skip
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await lag.refresh()
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def metrics_app(endpoint: MetricsEndpoint, health: Health) -> Starlette:
    """`/metrics`, `/healthz` and `/readyz` of a process, apart from any ingress."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def metrics(request: Request) -> Response:
        return await endpoint(request)

    async def readyz(_: Request) -> Response:
        status, body = await health.ready()
        return JSONResponse(body, status_code=status)

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
