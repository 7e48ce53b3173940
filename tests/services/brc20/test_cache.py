"""CachedProvider in front of a real indexer on 127.0.0.1, counting upstream calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from services.brc20 import (
    Brc20ConfigError,
    Brc20Unavailable,
    CachedProvider,
    HiroIndexer,
    NoProvider,
)
from tests.services.brc20.conftest import P2PKH, P2SH, SEGWIT_V0, TAPROOT
from tests.services.brc20.fake_indexer import FakeIndexer


class Clock:
    """A clock the test moves by hand (a plain callable, as `CachedProvider` takes)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


MakeCache = Callable[..., CachedProvider]


@pytest.fixture
async def cached(indexer: FakeIndexer, clock: Clock) -> AsyncIterator[MakeCache]:
    made: list[CachedProvider] = []

    def build(ttl_s: float = 30.0, max_entries: int = 100) -> CachedProvider:
        made.append(CachedProvider(HiroIndexer(indexer.url), ttl_s, max_entries, clock=clock))
        return made[-1]

    yield build
    for cache in made:
        await cache.aclose()


async def test_a_positive_answer_is_cached_until_the_ttl(
    indexer: FakeIndexer, cached: MakeCache, clock: Clock
) -> None:
    indexer.holdings[TAPROOT] = [("AINN", "5")]
    cache = cached(ttl_s=30)
    assert await cache.balances(TAPROOT) == {"AINN": 5}
    clock.now += 29.9
    indexer.holdings[TAPROOT] = [("AINN", "6")]
    assert await cache.balances(TAPROOT) == {"AINN": 5}
    assert indexer.calls() == 1
    clock.now += 0.1
    assert await cache.balances(TAPROOT) == {"AINN": 6}
    assert indexer.calls() == 2


async def test_a_negative_answer_is_cached(indexer: FakeIndexer, cached: MakeCache) -> None:
    cache = cached()
    assert await cache.balances(P2PKH) == {}
    assert await cache.balances(P2PKH) == {}
    assert indexer.calls() == 1


async def test_errors_are_not_cached(indexer: FakeIndexer, cached: MakeCache) -> None:
    cache = cached()
    indexer.mode = "http500"
    with pytest.raises(Brc20Unavailable):
        await cache.balances(TAPROOT)
    indexer.mode = "ok"
    indexer.holdings[TAPROOT] = [("AINN", "1")]
    assert await cache.balances(TAPROOT) == {"AINN": 1}
    assert indexer.calls() == 2
    assert len(cache) == 1


async def test_concurrent_lookups_share_one_call(indexer: FakeIndexer, cached: MakeCache) -> None:
    indexer.holdings[TAPROOT] = [("AINN", "5")]
    indexer.delay_s = 0.2
    cache = cached()
    answers = await asyncio.gather(*(cache.balances(TAPROOT) for _ in range(20)))
    assert answers == [{"AINN": 5}] * 20
    assert indexer.calls() == 1


async def test_concurrent_lookups_share_one_failure_then_retry(
    indexer: FakeIndexer, cached: MakeCache
) -> None:
    indexer.mode, indexer.delay_s = "http500", 0.2
    cache = cached()
    outcomes = await asyncio.gather(
        *(cache.balances(TAPROOT) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(o, Brc20Unavailable) for o in outcomes)
    assert indexer.calls() == 1
    indexer.mode, indexer.delay_s = "ok", 0
    assert await cache.balances(TAPROOT) == {}
    assert indexer.calls() == 2


async def test_different_addresses_are_not_coalesced(
    indexer: FakeIndexer, cached: MakeCache
) -> None:
    indexer.delay_s = 0.1
    cache = cached()
    await asyncio.gather(cache.balances(TAPROOT), cache.balances(P2PKH))
    assert indexer.calls(TAPROOT) == 1
    assert indexer.calls(P2PKH) == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_call(
    indexer: FakeIndexer, cached: MakeCache
) -> None:
    indexer.holdings[TAPROOT] = [("AINN", "2")]
    indexer.delay_s = 0.2
    cache = cached()
    first = asyncio.create_task(cache.balances(TAPROOT))
    second = asyncio.create_task(cache.balances(TAPROOT))
    await asyncio.sleep(0.05)
    first.cancel()
    assert await second == {"AINN": 2}
    assert first.cancelled()
    assert indexer.calls() == 1


async def test_least_recently_used_entries_leave_first(
    indexer: FakeIndexer, cached: MakeCache
) -> None:
    cache = cached(max_entries=2)
    await cache.balances(TAPROOT)
    await cache.balances(P2PKH)
    await cache.balances(TAPROOT)  # TAPROOT is now the most recent
    await cache.balances(P2SH)  # evicts P2PKH
    assert len(cache) == 2
    await cache.balances(TAPROOT)
    assert indexer.calls(TAPROOT) == 1
    await cache.balances(P2PKH)
    assert indexer.calls(P2PKH) == 2
    await cache.balances(SEGWIT_V0)
    assert len(cache) == 2


async def test_answers_are_copies(indexer: FakeIndexer, cached: MakeCache) -> None:
    indexer.holdings[TAPROOT] = [("AINN", "5")]
    cache = cached()
    (await cache.balances(TAPROOT))["AINN"] = 0
    assert await cache.balances(TAPROOT) == {"AINN": 5}


async def test_zero_ttl_caches_nothing_but_still_coalesces(
    indexer: FakeIndexer, cached: MakeCache
) -> None:
    indexer.delay_s = 0.1
    cache = cached(ttl_s=0)
    await asyncio.gather(*(cache.balances(TAPROOT) for _ in range(5)))
    assert indexer.calls() == 1
    await cache.balances(TAPROOT)
    assert indexer.calls() == 2
    assert len(cache) == 0


@pytest.mark.parametrize(("ttl_s", "max_entries"), [(-1, 10), (10, 0)])
def test_impossible_settings_are_refused(ttl_s: float, max_entries: int) -> None:
    with pytest.raises(Brc20ConfigError):
        CachedProvider(NoProvider(), ttl_s, max_entries)
