"""Holdings from a JSON file, for the embedded mode and tests:
`{"<address>": {"<TICKER>": <balance>, ...}, ...}`, balances as ints or decimal strings.
"""

from __future__ import annotations

import asyncio
import json
import os
from decimal import Decimal
from pathlib import Path

from services.brc20.address import BtcNetwork, resolve_network, validate_btc_address
from services.brc20.amounts import collect_holdings
from services.brc20.errors import Brc20ConfigError, Brc20Unavailable, InvalidBtcAddress

_Signature = tuple[int, int, int]  # (mtime_ns, size, inode): an atomic rename changes inode


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a balance")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key!r} appears twice")
        result[key] = value
    return result


class FileHoldings:
    """Reads the file at construction (a missing or malformed file raises
    `Brc20ConfigError` there) and again whenever its mtime, size or inode change; a file
    that goes missing or malformed later makes lookups raise `Brc20Unavailable` until it
    is fixed (stale holdings are never served silently). Address keys are validated for
    `network` and normalized; an address absent from the file holds nothing."""

    def __init__(
        self, path: str | os.PathLike[str], *, network: str | BtcNetwork = "mainnet"
    ) -> None:
        self._path = Path(path)
        self._network = resolve_network(network)
        self._lock = asyncio.Lock()
        self._signature: _Signature | None = None
        self._holdings: dict[str, dict[str, int]] = {}
        try:
            self._reload_if_changed()
        except Brc20Unavailable as exc:
            raise Brc20ConfigError(str(exc)) from exc

    @property
    def path(self) -> Path:
        return self._path

    async def balances(self, address: str) -> dict[str, int]:
        # A None signature means the last read failed: try again rather than serve stale data.
        if self._signature is None or self._stat() != self._signature:
            async with self._lock:  # one reload even when many lookups see the change
                await asyncio.to_thread(self._reload_if_changed)
        return dict(self._holdings.get(address, {}))

    async def aclose(self) -> None:
        return None

    def _stat(self) -> _Signature | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _reload_if_changed(self) -> None:
        signature = self._stat()
        if signature is None:
            self._signature = None
            raise Brc20Unavailable(f"BRC-20 holdings file {self._path} is missing or unreadable")
        if signature == self._signature:
            return  # another lookup reloaded it while this one waited for the lock
        try:
            text = self._path.read_text(encoding="utf-8")
            raw = json.loads(
                text,
                parse_float=Decimal,
                parse_constant=_reject_constant,
                object_pairs_hook=_unique_keys,
            )
            holdings = self._parse(raw)
        except (OSError, ValueError) as exc:
            self._signature = None  # so the next lookup tries again, and fails again
            raise Brc20Unavailable(
                f"BRC-20 holdings file {self._path} is malformed: {exc}"
            ) from exc
        self._holdings, self._signature = holdings, signature

    def _parse(self, raw: object) -> dict[str, dict[str, int]]:
        if not isinstance(raw, dict):
            raise ValueError('expected an object {"<address>": {"<TICKER>": <balance>}}')
        holdings: dict[str, dict[str, int]] = {}
        for key, tickers in raw.items():
            try:
                address = validate_btc_address(key, self._network)
            except InvalidBtcAddress as exc:
                raise ValueError(str(exc)) from exc
            if address in holdings:
                raise ValueError(f"address {address} is listed twice")
            if not isinstance(tickers, dict):
                raise ValueError(f"holdings of {address} must be an object of ticker: balance")
            try:
                holdings[address] = collect_holdings(tickers.items())
            except ValueError as exc:
                raise ValueError(f"holdings of {address}: {exc}") from exc
        return holdings
