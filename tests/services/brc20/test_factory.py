"""provider_from_config builds what the settings name, and fails at start otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.brc20 import (
    PROVIDER_KINDS,
    Brc20ConfigError,
    Brc20Gate,
    Brc20Unavailable,
    CachedProvider,
    FileHoldings,
    HiroIndexer,
    NoProvider,
    UniSatIndexer,
    provider_from_config,
)
from services.brc20 import hiro as hiro_module
from services.brc20 import unisat as unisat_module
from tests.services.brc20.conftest import TAPROOT
from tests.services.brc20.fake_indexer import FakeIndexer


def test_the_kinds() -> None:
    assert PROVIDER_KINDS == ("file", "hiro", "unisat", "none")


async def test_none_refuses_every_address_but_the_empty_one() -> None:
    provider = provider_from_config("none")
    assert isinstance(provider, NoProvider)
    gate = Brc20Gate(provider)
    assert await gate.require("") is None
    with pytest.raises(Brc20Unavailable, match="no BRC-20 provider configured"):
        await gate.require(TAPROOT)


async def test_file(holdings_file: Path) -> None:
    provider = provider_from_config("file", file=holdings_file)
    assert isinstance(provider, FileHoldings)
    assert (await provider.balances(TAPROOT))["AINN"] == 100


@pytest.mark.parametrize("file", [None, ""])
def test_file_needs_a_path(file: str | None) -> None:
    with pytest.raises(Brc20ConfigError, match="needs a holdings file path"):
        provider_from_config("file", file=file)


def test_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(Brc20ConfigError, match="missing"):
        provider_from_config("file", file=tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("kind", "cls", "key_header", "key_value"),
    [
        ("hiro", HiroIndexer, "x-api-key", "k1"),
        ("unisat", UniSatIndexer, "authorization", "Bearer k1"),
    ],
)
async def test_indexers_are_cached_and_configured(
    indexer: FakeIndexer, kind: str, cls: type, key_header: str, key_value: str
) -> None:
    indexer.holdings[TAPROOT] = [("AINN", "3")]
    provider = provider_from_config(kind, url=indexer.url, api_key="k1", cache_ttl_s=60)
    try:
        assert isinstance(provider, CachedProvider)
        assert isinstance(provider.provider, cls)
        assert await provider.balances(TAPROOT) == {"AINN": 3}
        assert await provider.balances(TAPROOT) == {"AINN": 3}
    finally:
        await provider.aclose()
    assert indexer.calls() == 1
    assert indexer.seen[0].headers[key_header] == key_value


async def test_an_empty_url_means_the_public_indexer() -> None:
    for kind, default in (("hiro", hiro_module.DEFAULT_URL), ("unisat", unisat_module.DEFAULT_URL)):
        provider = provider_from_config(kind)
        assert isinstance(provider, CachedProvider)
        inner = provider.provider
        assert isinstance(inner, HiroIndexer | UniSatIndexer)
        assert inner.base_url == default
        await provider.aclose()


@pytest.mark.parametrize(
    ("kind", "kwargs", "reason"),
    [
        ("chainhook", {}, "unknown BRC-20 provider 'chainhook'"),
        ("hiro", {"timeout_s": 0}, "timeout must be positive"),
        ("unisat", {"url": "open-api.unisat.io"}, "URL must be http"),
        ("hiro", {"cache_ttl_s": -1}, "cache TTL"),
    ],
)
def test_misconfiguration_fails_at_start(kind: str, kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(Brc20ConfigError, match=reason):
        provider_from_config(kind, **kwargs)  # type: ignore[arg-type]
