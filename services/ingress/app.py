"""The ingress FastAPI application: routers, and the one place errors become HTTP answers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from services.ingress.context import IngressContext
from services.ingress.errors import ApiError
from services.ingress.limits import BodyLimitMiddleware
from services.ingress.responses import JsonResponse
from services.ingress.routers import nodes, workspaces

MANAGEMENT_BODY_LIMIT = 1 << 20


def error_body(code: str, message: str, field: str | None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "field": field}}


def _field_of(location: tuple[Any, ...]) -> str:
    # Drop the leading "body"/"query"/"path" FastAPI puts in front of the field path.
    parts = [str(p) for p in location[1:]] if len(location) > 1 else [str(p) for p in location]
    return ".".join(parts)


async def _api_error(_: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, ApiError)
    return JsonResponse(error_body(exc.code, exc.message, exc.field), status_code=exc.status)


async def _validation_error(_: Request, exc: Exception) -> JsonResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return JsonResponse(
            error_body("malformed_json", f"the body is not valid JSON: {first['msg']}", "body"),
            status_code=400,
        )
    field = _field_of(tuple(first["loc"]))
    message = "; ".join(f"{_field_of(tuple(e['loc']))}: {e['msg']}" for e in errors[:5])
    return JsonResponse(error_body("invalid", message, field or None), status_code=422)


def create_app(context: IngressContext) -> FastAPI:
    """The HTTP API over a started `IngressContext` (the caller owns its lifecycle)."""
    app = FastAPI(title="NGPU gateway", version="0.1.0", default_response_class=JsonResponse)
    app.state.context = context
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

    app.add_middleware(BodyLimitMiddleware, limit_for=lambda path: MANAGEMENT_BODY_LIMIT)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(workspaces.router)
    app.include_router(nodes.router)
    return app
