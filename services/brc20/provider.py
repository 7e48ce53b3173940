"""The one interface every holdings source implements, and the source for "none"."""

from __future__ import annotations

from typing import Protocol

from services.brc20.errors import Brc20Unavailable


class Brc20Provider(Protocol):
    """Where BRC-20 holdings come from.

    `balances(address)` takes an address already normalized by `validate_btc_address`
    and answers `{TICKER: balance}`: tickers upper-cased, balances positive ints (see
    `amounts`); `{}` means the source positively knows the address holds nothing. Any
    failure to learn the answer raises `Brc20Unavailable`, never returns `{}`.
    `aclose()` releases connections; idempotent.
    """

    async def balances(self, address: str) -> dict[str, int]: ...

    async def aclose(self) -> None: ...


class NoProvider:
    """The provider of `kind="none"`: every lookup fails, so a request carrying a BTC
    address is refused instead of passing unchecked."""

    async def balances(self, address: str) -> dict[str, int]:
        raise Brc20Unavailable("no BRC-20 provider configured")

    async def aclose(self) -> None:
        return None
