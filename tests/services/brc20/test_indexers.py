"""The Hiro and UniSat providers against a real indexer on 127.0.0.1: shapes, pages,
API keys, and every kind of outage turning into `Brc20Unavailable`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from services.brc20 import Brc20ConfigError, Brc20Unavailable, HiroIndexer, UniSatIndexer
from services.brc20.http_indexer import MAX_PAGES, HttpIndexer
from tests.services.brc20.conftest import P2PKH, TAPROOT
from tests.services.brc20.fake_indexer import HIRO_MAX_LIMIT, FakeIndexer

Make = Callable[..., HttpIndexer]


@pytest.fixture(params=["hiro", "unisat"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    """Builds the parametrized indexer client; closes them all after the test."""
    kind = HiroIndexer if request.param == "hiro" else UniSatIndexer
    made: list[HttpIndexer] = []

    def build(url: str, **kwargs: object) -> HttpIndexer:
        made.append(kind(url, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield build
    for client in made:
        await client.aclose()


def _tickers(n: int) -> list[tuple[str, str]]:
    return [(f"t{i:03d}", f"{i + 1}.5") for i in range(n)]


async def test_reads_overall_balances_upper_cased(indexer: FakeIndexer, make: Make) -> None:
    indexer.holdings[TAPROOT] = [("ainn", "100.000000000000000000"), ("Ordi", "2.9"), ("x", "0.1")]
    assert await make(indexer.url).balances(TAPROOT) == {"AINN": 100, "ORDI": 2}


async def test_an_address_without_tokens_holds_nothing(indexer: FakeIndexer, make: Make) -> None:
    assert await make(indexer.url).balances(P2PKH) == {}
    assert indexer.calls() == 1


async def test_walks_every_page(indexer: FakeIndexer, make: Make) -> None:
    indexer.holdings[TAPROOT] = _tickers(130)
    holdings = await make(indexer.url, page_size=50).balances(TAPROOT)
    assert len(holdings) == 130
    assert holdings["T129"] == 130
    offsets = [s.query.get("offset", s.query.get("start")) for s in indexer.seen]
    assert offsets == ["0", "50", "100"]
    assert {s.query["limit"] for s in indexer.seen} == {"50"}


async def test_an_exact_last_page_ends_the_walk(indexer: FakeIndexer, make: Make) -> None:
    indexer.holdings[TAPROOT] = _tickers(40)
    assert len(await make(indexer.url, page_size=20).balances(TAPROOT)) == 40
    assert indexer.calls() == 2


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("http500", "HTTP 500"),
        ("garbage", "unexpected shape"),
        ("shape", "unexpected shape"),
        ("endless", f"more than {MAX_PAGES} pages"),
    ],
)
async def test_a_bad_answer_is_an_outage(
    indexer: FakeIndexer, make: Make, mode: str, reason: str
) -> None:
    indexer.holdings[TAPROOT] = _tickers(3)
    indexer.mode = mode
    with pytest.raises(Brc20Unavailable, match=reason):
        await make(indexer.url).balances(TAPROOT)


async def test_a_bad_balance_is_an_outage(indexer: FakeIndexer, make: Make) -> None:
    indexer.holdings[TAPROOT] = [("AINN", "-5")]
    with pytest.raises(Brc20Unavailable, match="bad balance"):
        await make(indexer.url).balances(TAPROOT)


async def test_a_slow_indexer_times_out(indexer: FakeIndexer, make: Make) -> None:
    indexer.delay_s = 0.5
    with pytest.raises(Brc20Unavailable, match="timed out"):
        await make(indexer.url, timeout_s=0.1).balances(TAPROOT)


async def test_an_unreachable_indexer_is_an_outage(dead_url: str, make: Make) -> None:
    with pytest.raises(Brc20Unavailable, match="unreachable: ConnectError"):
        await make(dead_url).balances(TAPROOT)


async def test_a_refused_key_is_an_outage(indexer: FakeIndexer, make: Make) -> None:
    indexer.hiro_key = indexer.unisat_key = "right-key"
    with pytest.raises(Brc20Unavailable, match="HTTP 401"):
        await make(indexer.url, api_key="wrong-key").balances(TAPROOT)


@pytest.mark.parametrize("url", ["", "ftp://example.org", "127.0.0.1:80"])
def test_a_url_must_be_http(url: str, make: Make) -> None:
    with pytest.raises(Brc20ConfigError, match="URL must be http"):
        make(url)


def test_the_timeout_must_be_positive(make: Make) -> None:
    with pytest.raises(Brc20ConfigError, match="timeout must be positive"):
        make("http://127.0.0.1:1", timeout_s=0)


# --- Hiro only -------------------------------------------------------------------------


async def test_hiro_sends_its_key_and_the_largest_page(indexer: FakeIndexer) -> None:
    indexer.hiro_key = "hiro-secret"
    indexer.holdings[TAPROOT] = [("AINN", "1")]
    async with HiroIndexer(indexer.url, api_key="hiro-secret") as hiro:
        assert await hiro.balances(TAPROOT) == {"AINN": 1}
    (seen,) = indexer.seen
    assert seen.path == f"/ordinals/v1/brc-20/balances/{TAPROOT}"
    assert seen.headers["x-api-key"] == "hiro-secret"
    assert seen.query == {"limit": str(HIRO_MAX_LIMIT), "offset": "0"}


async def test_hiro_sends_no_key_when_none_is_set(indexer: FakeIndexer) -> None:
    async with HiroIndexer(indexer.url) as hiro:
        await hiro.balances(TAPROOT)
    assert "x-api-key" not in indexer.seen[0].headers


def test_hiro_refuses_pages_larger_than_the_api_allows() -> None:
    with pytest.raises(Brc20ConfigError, match=r"page size must be 1\.\.60"):
        HiroIndexer("http://127.0.0.1:1", page_size=61)


# --- UniSat only -----------------------------------------------------------------------


async def test_unisat_sends_a_bearer_key(indexer: FakeIndexer) -> None:
    indexer.unisat_key = "unisat-secret"
    indexer.holdings[TAPROOT] = [("ainn", "3")]
    async with UniSatIndexer(indexer.url, api_key="unisat-secret") as unisat:
        assert await unisat.balances(TAPROOT) == {"AINN": 3}
    (seen,) = indexer.seen
    assert seen.path == f"/v1/indexer/address/{TAPROOT}/brc20/summary"
    assert seen.headers["authorization"] == "Bearer unisat-secret"
    assert seen.query == {"start": "0", "limit": "100"}


async def test_unisat_sends_no_key_when_none_is_set(indexer: FakeIndexer) -> None:
    async with UniSatIndexer(indexer.url) as unisat:
        await unisat.balances(TAPROOT)
    assert "authorization" not in indexer.seen[0].headers


async def test_unisat_non_zero_code_is_an_outage(indexer: FakeIndexer) -> None:
    indexer.mode = "code"
    async with UniSatIndexer(indexer.url) as unisat:
        with pytest.raises(Brc20Unavailable, match="code -1: 'address invalid'"):
            await unisat.balances(TAPROOT)
