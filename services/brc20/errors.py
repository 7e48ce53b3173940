"""Errors of the BRC-20 asset gate. The HTTP layer maps them in one handler: an invalid
address is a 4xx naming `btc_address`, a missing asset a 4xx, an outage a 503."""

from __future__ import annotations

from events.errors import NgpuError


class Brc20Error(NgpuError):
    """Root of the errors this package raises on purpose."""


class InvalidBtcAddress(Brc20Error, ValueError):
    """The address is not a valid Bitcoin address of the configured network; the message
    says why (bad checksum, wrong network, mixed case, bad length, ...)."""


class Brc20AssetMissing(Brc20Error):
    """The address is valid but does not hold the required ticker with the minimum
    balance; the message names the ticker and the minimum."""

    def __init__(self, message: str, *, ticker: str, min_balance: int, balance: int) -> None:
        super().__init__(message)
        self.ticker = ticker
        self.min_balance = min_balance
        self.balance = balance


class Brc20Unavailable(Brc20Error):
    """The holdings could not be learned: no provider configured, the indexer is down,
    slow, answered 4xx/5xx, garbage or an unexpected shape, or the holdings file is
    missing or malformed. Never a reason to let a request pass."""


class Brc20ConfigError(Brc20Error, ValueError):
    """The gate or a provider was configured with impossible values (unknown kind or
    network, non-positive minimum, missing file path)."""
