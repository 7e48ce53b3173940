"""`RequestMetrics`: counts each request by route template, method and status, times it
(to the end of its response), and logs an access line. Outermost: it sees the answers of
every other middleware too. The context bound during the request (the workspace's hash,
the task id: `services.logs`) is on every line logged meanwhile, the access line included.
A raw path is never logged nor labelled (management paths hold ids), only the template."""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.logs import clear
from services.metrics.instruments import REQUEST_SECONDS, REQUESTS

access_log = logging.getLogger("ngpu.access")
UNMATCHED = "unmatched"
"""The route label of a request no route took (an unknown path, or answered by a
middleware before routing: the body limit, the start's 503)."""


class RequestMetrics:
    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clear()
        began = time.perf_counter()
        status = 500  # an error that escapes before an answer becomes a 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._done(scope, status, time.perf_counter() - began)

    def _done(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or UNMATCHED
        method = scope["method"]
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (REQUESTS.labels(route, method, str(status)),
                        REQUEST_SECONDS.labels(route, method))  # fmt: skip
            self._children[key] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(seconds)
        if self.access_log and access_log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            access_log.info(
                "%s %s %d %.1f ms", method, route, status, seconds * 1000,
                extra={"method": method, "route": route, "status": status,
                       "latency_ms": round(seconds * 1000, 3),
                       "client": client[0] if client else None},
            )  # fmt: skip
