"""Whether a process can serve: `/healthz` (alive: it answers) and `/readyz` (ready: every
role of it has caught up with the log, and its bus and its store answer).

A probe asks the bus (and the ClickHouse store, where the process holds one) at most once
per `ttl_s`, however often load balancers ask, each within `timeout_s`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from services.readiness import Readiness

Probe = Callable[[], Awaitable[bool]]


def bus_probe(bus: Any) -> Probe | None:
    """The bus's own reachability check (`reachable()`), if it has one."""
    return getattr(bus, "reachable", None)


def store_probe(client: Any) -> Probe:
    """A ClickHouse client answers `SELECT 1` (in a worker thread: its client is blocking)."""

    async def probe() -> bool:
        await asyncio.to_thread(client.command, "SELECT 1")
        return True

    return probe


class Health:
    """The probes of one process, by name (`bus`, `store`), with their answers cached."""

    def __init__(
        self,
        readiness: Readiness,
        probes: dict[str, Probe | None] | None = None,
        *,
        ttl_s: float = 2.0,
        timeout_s: float = 2.0,
    ) -> None:
        self.readiness = readiness
        self.probes = {name: p for name, p in (probes or {}).items() if p is not None}
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._answers: dict[str, tuple[float, bool]] = {}
        self._lock = asyncio.Lock()

    async def unavailable(self) -> list[str]:
        """The names of the dependencies that did not answer (empty: all did)."""
        async with self._lock:  # one probe at a time, however many ask at once
            down = []
            for name, probe in self.probes.items():
                at, ok = self._answers.get(name, (-float("inf"), False))
                if time.monotonic() - at > self.ttl_s:
                    ok = await self._ask(probe)
                    self._answers[name] = (time.monotonic(), ok)
                if not ok:
                    down.append(name)
            return down

    async def _ask(self, probe: Probe) -> bool:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout_s):
                return await probe()
        return False

    async def ready(self) -> tuple[int, dict[str, Any]]:
        """`/readyz`'s status and body: 200 `{"ready": true}`, else 503 naming what is
        still catching up (`waiting_for`) and what does not answer (`unavailable`)."""
        waiting = self.readiness.waiting_for
        down = await self.unavailable()
        if not waiting and not down:
            return 200, {"ready": True}
        body: dict[str, Any] = {"ready": False, "waiting_for": waiting}
        if down:
            body["unavailable"] = down
        return 503, body
