"""Build the provider the settings ask for (the settings class lives elsewhere: this
takes plain values)."""

from __future__ import annotations

import os
from typing import Literal, get_args

import httpx

from services.brc20 import hiro, unisat
from services.brc20.address import BtcNetwork
from services.brc20.cache import CachedProvider, check_cache_settings
from services.brc20.errors import Brc20ConfigError
from services.brc20.file_holdings import FileHoldings
from services.brc20.hiro import HiroIndexer
from services.brc20.provider import Brc20Provider, NoProvider
from services.brc20.unisat import UniSatIndexer

ProviderKind = Literal["file", "hiro", "unisat", "none"]
PROVIDER_KINDS: tuple[str, ...] = get_args(ProviderKind)


def provider_from_config(
    kind: str,
    *,
    file: str | os.PathLike[str] | None = None,
    url: str = "",
    api_key: str | None = None,
    timeout_s: float = 5.0,
    cache_ttl_s: float = 60.0,
    cache_max_entries: int = 10_000,
    network: str | BtcNetwork = "mainnet",
    transport: httpx.AsyncBaseTransport | None = None,
) -> Brc20Provider:
    """The provider of `kind`:

    - `"none"`: every lookup raises `Brc20Unavailable("no BRC-20 provider configured")`;
    - `"file"`: `FileHoldings(file)`, read now (already in memory: not cached);
    - `"hiro"` / `"unisat"`: the indexer at `url` (empty: its public URL) with `api_key`
      and `timeout_s`, behind `CachedProvider(ttl=cache_ttl_s)`.

    Raises `Brc20ConfigError` for an unknown kind, a missing or malformed file, or bad
    numbers, so a misconfigured process fails at start.
    """
    if kind == "none":
        return NoProvider()
    if kind == "file":
        if not file:
            raise Brc20ConfigError("BRC-20 provider 'file' needs a holdings file path")
        return FileHoldings(file, network=network)
    if kind in ("hiro", "unisat"):
        check_cache_settings(cache_ttl_s, cache_max_entries)  # before a client is opened
    if kind == "hiro":
        indexer: HiroIndexer | UniSatIndexer = HiroIndexer(
            url or hiro.DEFAULT_URL, api_key=api_key, timeout_s=timeout_s, transport=transport
        )
    elif kind == "unisat":
        indexer = UniSatIndexer(
            url or unisat.DEFAULT_URL, api_key=api_key, timeout_s=timeout_s, transport=transport
        )
    else:
        raise Brc20ConfigError(
            f"unknown BRC-20 provider {kind!r}; expected one of {', '.join(PROVIDER_KINDS)}"
        )
    return CachedProvider(indexer, cache_ttl_s, cache_max_entries)
