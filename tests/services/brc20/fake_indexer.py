"""A fake BRC-20 indexer speaking both the Hiro and the UniSat shapes, served over real
HTTP on 127.0.0.1 in the test's event loop. It counts the requests it serves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

HIRO_MAX_LIMIT = 60


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeIndexer:
    """`holdings` maps an address to its (ticker, overall balance) rows in server order.
    `mode`: "ok", "http500", "garbage" (not JSON), "shape" (JSON of another shape),
    "endless" (`total` always one more than served), "code" (UniSat `code` -1).
    `delay_s` holds every answer back that long."""

    holdings: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    hiro_key: str | None = None
    unisat_key: str | None = None
    mode: str = "ok"
    delay_s: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def calls(self, address: str | None = None) -> int:
        return sum(1 for s in self.seen if address is None or address in s.path)

    async def _common(self, request: Request) -> Response | None:
        self.seen.append(Seen(request.url.path, dict(request.query_params), dict(request.headers)))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.mode == "http500":
            return PlainTextResponse("upstream exploded", status_code=500)
        if self.mode == "garbage":
            return PlainTextResponse("<html>definitely not json", status_code=200)
        if self.mode == "shape":
            return JSONResponse({"unexpected": True, "results": "nope"})
        return None

    async def hiro(self, request: Request) -> Response:
        early = await self._common(request)
        if early is not None:
            return early
        if self.hiro_key is not None and request.headers.get("x-api-key") != self.hiro_key:
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        limit = int(request.query_params.get("limit", "20"))
        offset = int(request.query_params.get("offset", "0"))
        if not 1 <= limit <= HIRO_MAX_LIMIT:
            return JSONResponse({"error": "limit out of range"}, status_code=400)
        page, total = self._page(request.path_params["address"], offset, limit)
        results = [
            {
                "ticker": ticker,
                "available_balance": "0.000000000000000000",
                "transferrable_balance": balance,
                "overall_balance": balance,
            }
            for ticker, balance in page
        ]
        return JSONResponse({"limit": limit, "offset": offset, "total": total, "results": results})

    async def unisat(self, request: Request) -> Response:
        early = await self._common(request)
        if early is not None:
            return early
        expected = f"Bearer {self.unisat_key}"
        if self.unisat_key is not None and request.headers.get("authorization") != expected:
            return JSONResponse({"code": -1, "msg": "Invalid API Key"}, status_code=401)
        if self.mode == "code":
            return JSONResponse({"code": -1, "msg": "address invalid", "data": None})
        start = int(request.query_params["start"])
        limit = int(request.query_params["limit"])
        page, total = self._page(request.path_params["address"], start, limit)
        detail: list[dict[str, Any]] = [
            {
                "ticker": ticker,
                "overallBalance": balance,
                "transferableBalance": "0",
                "availableBalance": balance,
            }
            for ticker, balance in page
        ]
        data = {"height": 850000, "total": total, "start": start, "detail": detail}
        return JSONResponse({"code": 0, "msg": "ok", "data": data})

    def _page(self, address: str, offset: int, limit: int) -> tuple[list[tuple[str, str]], int]:
        if self.mode == "endless":  # always one more row than served so far
            return [(f"T{offset}", "1")], offset + 2
        rows = self.holdings.get(address, [])
        return rows[offset : offset + limit], len(rows)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/ordinals/v1/brc-20/balances/{address}", self.hiro),
                Route("/v1/indexer/address/{address}/brc20/summary", self.unisat),
            ]
        )


@contextlib.asynccontextmanager
async def serve_fake_indexer() -> AsyncIterator[FakeIndexer]:
    """Serve a `FakeIndexer` on a free port of 127.0.0.1 until the block ends."""
    fake = FakeIndexer()
    config = uvicorn.Config(
        fake.app(), host="127.0.0.1", port=0, log_level="error", lifespan="off",
        timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):  # up to 10 s
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started, "the fake indexer did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        fake.url = f"http://127.0.0.1:{port}"
        yield fake
    finally:
        server.should_exit = True
        await task
