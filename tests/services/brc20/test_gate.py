"""Gate semantics: empty skips, invalid is refused before any lookup, too little is
missing, enough passes, an outage never passes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.brc20 import (
    Brc20AssetMissing,
    Brc20Check,
    Brc20ConfigError,
    Brc20Gate,
    Brc20Unavailable,
    CachedProvider,
    FileHoldings,
    HiroIndexer,
    InvalidBtcAddress,
    NoProvider,
)
from tests.services.brc20.conftest import P2PKH, P2SH, SEGWIT_V0, TAPROOT, write_holdings
from tests.services.brc20.fake_indexer import FakeIndexer


@pytest.fixture
def gate(holdings_file: Path) -> Brc20Gate:
    return Brc20Gate(FileHoldings(holdings_file))


@pytest.fixture
async def hiro_gate(indexer: FakeIndexer) -> AsyncIterator[Brc20Gate]:
    gate = Brc20Gate(CachedProvider(HiroIndexer(indexer.url), ttl_s=30))
    yield gate
    await gate.aclose()


async def test_check_answers_the_contract_fields(gate: Brc20Gate) -> None:
    check = await gate.check(TAPROOT)
    assert check == Brc20Check(exists=True, names=("AINN", "ORDI"), balances=(100, 2))
    assert check.as_dict() == {"exists": True, "names": ["AINN", "ORDI"], "balances": [100, 2]}


async def test_check_without_the_ticker_lists_the_others(gate: Brc20Gate) -> None:
    check = await gate.check(SEGWIT_V0.upper())  # normalized before the lookup
    assert check == Brc20Check(exists=False, names=("ORDI",), balances=(7,))


async def test_check_of_an_empty_address_is_invalid(gate: Brc20Gate) -> None:
    with pytest.raises(InvalidBtcAddress, match="empty"):
        await gate.check("")


async def test_require_skips_an_empty_address_without_a_lookup() -> None:
    gate = Brc20Gate(NoProvider())  # any lookup would raise
    assert await gate.require("") is None


async def test_require_passes_an_address_holding_enough(gate: Brc20Gate) -> None:
    check = await gate.require(TAPROOT)
    assert check is not None and check.exists


@pytest.mark.parametrize("address", [SEGWIT_V0, P2PKH, P2SH])
async def test_require_refuses_an_address_without_the_ticker(gate: Brc20Gate, address: str) -> None:
    with pytest.raises(Brc20AssetMissing, match="at least 1 AINN") as info:
        await gate.require(address)
    assert (info.value.ticker, info.value.min_balance, info.value.balance) == ("AINN", 1, 0)


async def test_require_refuses_a_balance_below_the_minimum(holdings_file: Path) -> None:
    gate = Brc20Gate(FileHoldings(holdings_file), ticker="ainn", min_balance=101)
    with pytest.raises(Brc20AssetMissing, match=r"at least 101 AINN .*holds 100"):
        await gate.require(TAPROOT)
    assert (await gate.check(TAPROOT)).exists is False


async def test_a_fraction_is_not_a_token(tmp_path: Path) -> None:
    path = write_holdings(tmp_path / "h.json", {TAPROOT: {"AINN": "0.99"}})
    gate = Brc20Gate(FileHoldings(path))
    with pytest.raises(Brc20AssetMissing):
        await gate.require(TAPROOT)


@pytest.mark.parametrize(
    "address",
    [
        " ",
        "not-an-address",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",  # bad checksum
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",  # testnet
    ],
)
async def test_require_refuses_an_invalid_address_before_any_lookup(address: str) -> None:
    gate = Brc20Gate(NoProvider())  # a lookup would raise Brc20Unavailable instead
    with pytest.raises(InvalidBtcAddress):
        await gate.require(address)


async def test_without_a_provider_an_address_never_passes() -> None:
    gate = Brc20Gate(NoProvider())
    with pytest.raises(Brc20Unavailable, match="no BRC-20 provider configured"):
        await gate.require(TAPROOT)
    with pytest.raises(Brc20Unavailable, match="no BRC-20 provider configured"):
        await gate.check(TAPROOT)


async def test_an_indexer_outage_never_passes(indexer: FakeIndexer, hiro_gate: Brc20Gate) -> None:
    indexer.mode = "http500"
    with pytest.raises(Brc20Unavailable, match="HTTP 500"):
        await hiro_gate.require(TAPROOT)
    indexer.mode = "garbage"
    with pytest.raises(Brc20Unavailable):
        await hiro_gate.check(TAPROOT)


async def test_an_indexer_backed_gate_passes_a_holder(
    indexer: FakeIndexer, hiro_gate: Brc20Gate
) -> None:
    indexer.holdings[TAPROOT] = [("ainn", "21.000000000000000000"), ("ordi", "1")]
    check = await hiro_gate.require(TAPROOT.upper())
    assert check == Brc20Check(exists=True, names=("AINN", "ORDI"), balances=(21, 1))
    assert indexer.seen[0].path.endswith(TAPROOT)  # the normalized form went upstream


async def test_a_testnet_gate_checks_testnet_addresses(tmp_path: Path) -> None:
    address = "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"
    path = write_holdings(tmp_path / "h.json", {address: {"AINN": 1}})
    gate = Brc20Gate(FileHoldings(path, network="testnet"), network="testnet")
    assert await gate.require(address) is not None
    with pytest.raises(InvalidBtcAddress, match="mainnet address"):
        await gate.require(TAPROOT)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"min_balance": 0}, "minimum balance must be an int >= 1"),
        ({"min_balance": True}, "minimum balance"),
        ({"min_balance": 1.5}, "minimum balance"),
        ({"ticker": ""}, "ticker"),
        ({"network": "moon"}, "unknown BTC network"),
    ],
)
def test_impossible_gate_settings_are_refused(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(Brc20ConfigError, match=reason):
        Brc20Gate(NoProvider(), **kwargs)  # type: ignore[arg-type]


def test_gate_settings_are_normalized() -> None:
    gate = Brc20Gate(NoProvider(), ticker="ainn", min_balance=5, network="regtest")
    assert (gate.ticker, gate.min_balance, gate.network.hrp) == ("AINN", 5, "bcrt")
