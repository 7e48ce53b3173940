"""The ingress FastAPI application: routers, and the one place errors become HTTP answers."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from services import tracing
from services.bus import BusUnavailable
from services.ingress.auth import WORKSPACE_SECURITY_SCHEME
from services.ingress.context import IngressContext
from services.ingress.edge import edge_protocol
from services.ingress.errors import ApiError
from services.ingress.limits import BodyLimitMiddleware
from services.ingress.responses import JsonResponse
from services.ingress.results import contract_body
from services.ingress.routers import (
    analytics,
    ngpu,
    nodes,
    registry_auth,
    streams,
    tasks,
    usage,
    workspace_list,
    workspace_logs,
    workspaces,
)
from services.ingress.starting import StartingGate
from services.metrics.exposition import MetricsEndpoint
from services.metrics.middleware import RequestMetrics
from services.settings import Settings
from services.ui import router as ui

MANAGEMENT_BODY_LIMIT = 1 << 20
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""The TLS 1.2 suites the ingress offers (OpenSSL's notation)."""
log = logging.getLogger(__name__)


def error_body(code: str, message: str, field: str | None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def _field_of(location: tuple[Any, ...]) -> str:
    # Drop the leading "body"/"query"/"path" FastAPI puts in front of the field path.
    parts = [str(p) for p in location[1:]] if len(location) > 1 else [str(p) for p in location]
    return ".".join(parts)


def is_contract_path(path: str) -> bool:
    """Paths of the customer's NGPU API, whose errors take the contract's shape."""
    return path.startswith(("/user/", "/brc20/"))


_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
_AGENT_POLLS = ("/heartbeat", "/assignments")


def untraced(path: str) -> bool:
    """Requests that get no span: the probes and scrapes, and node agents' heartbeats and
    assignment polls (every node, every few seconds: noise, not requests anyone traces)."""
    return path in _PROBES or (path.startswith("/v1/nodes/") and path.endswith(_AGENT_POLLS))


def _error(
    request: Request,
    status: int,
    code: str,
    message: str,
    field: str | None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    if is_contract_path(request.url.path):
        msg = f"{field}: {message}" if field and not message.startswith(field) else message
        return JsonResponse(contract_body(status, msg), status_code=status, headers=headers)
    return JsonResponse(error_body(code, message, field), status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, ApiError)
    # A bus that cannot take writes says so itself, once per interval with the count
    # refused (`services.bus.outage`): not a line per request here.
    outage = isinstance(exc.__cause__, BusUnavailable)
    if exc.status >= 500 and exc.__cause__ is not None and not outage:
        # A dependency's own error text (ClickHouse, Kafka, an indexer) stays in the log:
        # the answer says only which dependency failed.
        log.warning("%s %s answered %d (%s): %s", request.method, request.url.path,
                    exc.status, exc.message, exc.__cause__)  # fmt: skip
    return _error(request, exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        message = f"the body is not valid JSON: {first['msg']}"
        return _error(request, 400, "malformed_json", message, "body")
    field = _field_of(tuple(first["loc"]))
    message = "; ".join(f"{_field_of(tuple(e['loc']))}: {e['msg']}" for e in errors[:5])
    # The NGPU API's table has one class for bad query parameters: 400.
    status = 400 if is_contract_path(request.url.path) else 422
    return _error(request, status, "invalid", message, field or None)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> JsonResponse:
    # The router's own answers (no route for the path, not this method) take the API's
    # error shape too, not FastAPI's `{"detail"}`: OpenAPI documents one error body.
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})  # a 405's `Allow`
    return _error(request, exc.status_code, code, str(exc.detail), None, headers)


async def _client_left(_: Request, exc: Exception) -> Response:
    # The caller hung up before its body arrived: nobody is left to answer, and nothing
    # was published. (499 is the customary log code for it.)
    return Response(status_code=499)


def server_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """How uvicorn serves the ingress. `proxy_headers` is off: the caller's IP is decided
    by `NGPU_TRUSTED_PROXIES` alone (`services.ingress.clientip`), whereas uvicorn would
    believe any `X-Forwarded-For` sent from 127.0.0.1 and rewrite the peer before we see it.
    The edge limits (`NGPU_HTTP_*`): a connection cap, and the head/body deadlines and head
    size cap of `services.ingress.edge` (uvicorn has no header read timeout). With
    `NGPU_TLS_CERT_FILE`/`NGPU_TLS_KEY_FILE`, HTTPS only (TLS 1.2 with forward-secret AEAD
    suites, or TLS 1.3)."""
    tls: dict[str, Any] = {}
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        # uvicorn's own default cipher string ("TLSv1") leaves TLS 1.2 clients only CBC
        # suites; TLS 1.3's suites are not affected by this list.
        tls = {"ssl_certfile": str(settings.tls_cert_file),
               "ssl_keyfile": str(settings.tls_key_file), "ssl_ciphers": TLS12_CIPHERS}  # fmt: skip
    protocol = edge_protocol(
        header_timeout_s=settings.http_header_timeout_s,
        body_timeout_s=settings.http_body_timeout_s,
        max_head_bytes=settings.http_max_header_bytes,
    )
    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level,
        lifespan="off", access_log=False, proxy_headers=False, timeout_graceful_shutdown=5,
        http=protocol, limit_concurrency=settings.http_max_connections,
        timeout_keep_alive=settings.http_keep_alive_s, **tls,
    )  # fmt: skip


def create_app(context: IngressContext) -> FastAPI:
    """The HTTP API over a started `IngressContext` (the caller owns its lifecycle)."""
    app = _bare_app()
    app.state.context = context
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_left)

    task_limit = context.settings.max_body_bytes
    app.add_middleware(
        BodyLimitMiddleware,
        limit_for=lambda path: task_limit if is_contract_path(path) else MANAGEMENT_BODY_LIMIT,
        contract_path=is_contract_path,
    )
    app.add_middleware(
        StartingGate, started=lambda: context.follower.ready.caught_up,
        contract_path=is_contract_path,
    )  # fmt: skip
    if tracing.ENABLED:  # inside RequestMetrics: its access line gets the trace id
        app.add_middleware(tracing.TracingMiddleware, untraced=untraced,
                           trust_caller=context.settings.trace_trust_caller)  # fmt: skip
    app.add_middleware(RequestMetrics, access_log=context.settings.access_log)  # outermost

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        """Liveness: the process answers (it may still be catching up with the log)."""
        return {"ok": True}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JsonResponse:
        """Readiness: every role of this process has caught up with the log, and the bus
        and the store answer."""
        assert context.health is not None
        status, body = await context.health.ready()
        return JsonResponse(body, status_code=status)

    scrape = MetricsEndpoint(context.admin_token, public=context.settings.metrics_public)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics of this process (the admin token unless NGPU_METRICS_PUBLIC)."""
        return await scrape(request)

    _add_api(app)
    return app


def _bare_app() -> FastAPI:
    return FastAPI(title="NGPU gateway", version="0.1.0", default_response_class=JsonResponse)


def _add_api(app: FastAPI) -> None:
    """The routes of the API (what OpenAPI documents)."""
    app.include_router(ngpu.router)  # first: the hottest routes are matched first
    app.include_router(streams.router)
    app.include_router(workspace_list.router)  # before `/{id}` routes: none overlap anyway
    app.include_router(workspaces.router)
    app.include_router(registry_auth.router)
    app.include_router(workspace_logs.router)
    app.include_router(usage.router)  # before `/v1/nodes/{id}`'s routes: none overlap anyway
    app.include_router(nodes.router)
    app.include_router(analytics.router)
    app.include_router(tasks.router)
    ui.install(app)  # the dashboard, out of the OpenAPI document
    _document_security(app)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document `/openapi.json` serves, made without starting anything (for
    `ngpu schemas`, which keeps `schemas/openapi.json` in line with it)."""
    app = _bare_app()
    _add_api(app)
    return app.openapi()


def _document_security(app: FastAPI) -> None:
    """Add the workspace bearer scheme the NGPU routes' `openapi_extra` refers to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {}).update(WORKSPACE_SECURITY_SCHEME)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
