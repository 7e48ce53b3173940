"""A TTL cache in front of a provider, so a burst of requests from one address costs one
indexer call."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from services.brc20.errors import Brc20ConfigError
from services.brc20.provider import Brc20Provider


def check_cache_settings(ttl_s: float, max_entries: int) -> None:
    """Raises `Brc20ConfigError` unless `ttl_s >= 0` and `max_entries >= 1`."""
    if not ttl_s >= 0:
        raise Brc20ConfigError(f"cache TTL must be >= 0 seconds, got {ttl_s}")
    if max_entries < 1:
        raise Brc20ConfigError(f"cache size must be >= 1 entry, got {max_entries}")


class CachedProvider:
    """Answers from `provider`, remembered for `ttl_s` seconds (measured from when the
    answer arrived), at most `max_entries` addresses (least recently used leave first).

    - positive and negative (`{}`) answers are cached; errors are not, so the next
      lookup asks again;
    - concurrent lookups of one uncached address share one upstream call and its
      outcome, answer or error; a caller that is cancelled does not cancel the call;
    - `ttl_s=0` keeps the sharing and caches nothing.
    """

    def __init__(
        self,
        provider: Brc20Provider,
        ttl_s: float,
        max_entries: int = 10_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_cache_settings(ttl_s, max_entries)
        self._provider = provider
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, dict[str, int]]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[dict[str, int]]] = {}

    @property
    def provider(self) -> Brc20Provider:
        return self._provider

    def __len__(self) -> int:
        return len(self._entries)

    async def balances(self, address: str) -> dict[str, int]:
        entry = self._entries.get(address)
        if entry is not None:
            expires_at, holdings = entry
            if self._clock() < expires_at:
                self._entries.move_to_end(address)
                return dict(holdings)  # a copy: callers must not edit the cached answer
            del self._entries[address]
        task = self._inflight.get(address)
        if task is None:
            task = asyncio.create_task(self._fetch(address))
            self._inflight[address] = task
            task.add_done_callback(partial(self._settled, address))
        return dict(await asyncio.shield(task))

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        self._entries.clear()
        await self._provider.aclose()

    async def _fetch(self, address: str) -> dict[str, int]:
        holdings = await self._provider.balances(address)
        if self._ttl_s > 0:
            self._entries[address] = (self._clock() + self._ttl_s, dict(holdings))
            self._entries.move_to_end(address)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return holdings

    def _settled(self, address: str, task: asyncio.Task[dict[str, int]]) -> None:
        if self._inflight.get(address) is task:
            del self._inflight[address]
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning when all callers left
