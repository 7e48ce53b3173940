"""FileHoldings reads a real JSON file, reloads it when it changes, and never serves a
file it cannot read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.brc20 import Brc20ConfigError, Brc20Unavailable, FileHoldings
from tests.services.brc20.conftest import P2PKH, P2SH, SEGWIT_V0, TAPROOT, write_holdings


def _bump_mtime(path: Path) -> None:
    """Move the mtime a second ahead: some filesystems keep coarse timestamps."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _delete(path: Path) -> None:
    path.unlink()


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


async def test_reads_holdings_per_address(holdings_file: Path) -> None:
    provider = FileHoldings(holdings_file)
    assert await provider.balances(TAPROOT) == {"AINN": 100, "ORDI": 2}  # SATS 0.9 -> dropped
    assert await provider.balances(SEGWIT_V0) == {"ORDI": 7}
    assert await provider.balances(P2PKH) == {}
    assert await provider.balances(P2SH) == {}  # absent: holds nothing


async def test_keys_are_normalized_like_lookups(tmp_path: Path) -> None:
    path = write_holdings(tmp_path / "h.json", {TAPROOT.upper(): {"AINN": "5"}})
    assert await FileHoldings(path).balances(TAPROOT) == {"AINN": 5}


async def test_json_numbers_with_fractions_are_truncated(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    _write_text(path, f'{{"{P2SH}": {{"AINN": 12.75}}}}')
    assert await FileHoldings(path).balances(P2SH) == {"AINN": 12}


async def test_answers_are_copies(holdings_file: Path) -> None:
    provider = FileHoldings(holdings_file)
    (await provider.balances(TAPROOT))["AINN"] = 0
    assert (await provider.balances(TAPROOT))["AINN"] == 100


async def test_reloads_when_the_file_changes(holdings_file: Path) -> None:
    provider = FileHoldings(holdings_file)
    assert await provider.balances(P2SH) == {}
    write_holdings(holdings_file, {P2SH: {"AINN": 9}})
    _bump_mtime(holdings_file)
    assert await provider.balances(P2SH) == {"AINN": 9}
    assert await provider.balances(TAPROOT) == {}  # gone from the new file


async def test_reloads_after_an_atomic_replace(holdings_file: Path, tmp_path: Path) -> None:
    provider = FileHoldings(holdings_file)
    fresh = write_holdings(tmp_path / "next.json", {SEGWIT_V0: {"AINN": 1}})
    fresh.replace(holdings_file)
    assert await provider.balances(SEGWIT_V0) == {"AINN": 1}


async def test_a_file_deleted_later_makes_lookups_fail(holdings_file: Path) -> None:
    provider = FileHoldings(holdings_file)
    assert await provider.balances(TAPROOT)
    _delete(holdings_file)
    for _ in range(2):  # and keeps failing: no stale holdings
        with pytest.raises(Brc20Unavailable, match="missing"):
            await provider.balances(TAPROOT)
    write_holdings(holdings_file, {TAPROOT: {"AINN": 3}})
    assert await provider.balances(TAPROOT) == {"AINN": 3}


async def test_a_file_broken_later_fails_until_fixed(holdings_file: Path) -> None:
    provider = FileHoldings(holdings_file)
    _write_text(holdings_file, "{not json")
    _bump_mtime(holdings_file)
    for _ in range(2):
        with pytest.raises(Brc20Unavailable, match="malformed"):
            await provider.balances(TAPROOT)
    write_holdings(holdings_file, {TAPROOT: {"AINN": 4}})
    _bump_mtime(holdings_file)
    assert await provider.balances(TAPROOT) == {"AINN": 4}


def test_a_missing_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(Brc20ConfigError, match=r"nope\.json is missing"):
        FileHoldings(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "malformed"),
        ("[]", "expected an object"),
        ('{"not-an-address": {}}', "invalid BTC address 'not-an-address'"),
        (f'{{"{TAPROOT}": {{"AINN": -1}}}}', "negative"),
        (f'{{"{TAPROOT}": {{"AINN": NaN}}}}', "NaN is not a balance"),
        (f'{{"{TAPROOT}": {{"AINN": true}}}}', "boolean"),
        (f'{{"{TAPROOT}": {{"AINN": "1e3"}}}}', "not a plain non-negative decimal"),
        (f'{{"{TAPROOT}": ["AINN"]}}', "must be an object"),
        (f'{{"{TAPROOT}": {{}}, "{TAPROOT}": {{}}}}', "appears twice"),
        (f'{{"{TAPROOT}": {{}}, "{TAPROOT.upper()}": {{}}}}', "listed twice"),
        (f'{{"{TAPROOT}": {{"AINN": 1, "ainn": 2}}}}', "AINN is listed twice"),
        (  # a testnet address in a mainnet file
            '{"tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7": {}}',
            "testnet/signet address",
        ),
    ],
)
def test_a_malformed_file_fails_at_construction(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "h.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(Brc20ConfigError, match="malformed") as info:
        FileHoldings(path)
    assert reason in str(info.value)


async def test_a_testnet_file_for_a_testnet_gate(tmp_path: Path) -> None:
    address = "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"
    path = write_holdings(tmp_path / "h.json", {address: {"AINN": 2}})
    assert await FileHoldings(path, network="testnet").balances(address) == {"AINN": 2}
