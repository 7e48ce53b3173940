"""The BRC-20 asset gate: what `/brc20/checkAddress` answers, and the check a task
request carrying `btc_address` must pass before it runs."""

from __future__ import annotations

from dataclasses import dataclass

from services.brc20.address import BtcNetwork, resolve_network, validate_btc_address
from services.brc20.amounts import normalize_ticker
from services.brc20.errors import Brc20AssetMissing, Brc20ConfigError
from services.brc20.provider import Brc20Provider


@dataclass(frozen=True, slots=True)
class Brc20Check:
    """The contract's checkAddress answer: `names` and `balances` in one order (sorted by
    ticker); `exists` is true when the gate's ticker is held with at least its minimum."""

    exists: bool
    names: tuple[str, ...]
    balances: tuple[int, ...]

    def as_dict(self) -> dict[str, object]:
        """`{"exists": bool, "names": [str], "balances": [int]}`, ready for JSON."""
        return {"exists": self.exists, "names": list(self.names), "balances": list(self.balances)}


class Brc20Gate:
    """Checks BTC addresses for `ticker` (upper-cased) with `min_balance` (>= 1) on
    `network`, through `provider` (which the gate owns: `aclose` closes it)."""

    def __init__(
        self,
        provider: Brc20Provider,
        ticker: str = "AINN",
        min_balance: int = 1,
        network: str | BtcNetwork = "mainnet",
    ) -> None:
        try:
            self._ticker = normalize_ticker(ticker)
        except ValueError as exc:
            raise Brc20ConfigError(f"BRC-20 gate {exc}") from exc
        if isinstance(min_balance, bool) or not isinstance(min_balance, int) or min_balance < 1:
            # 0 would let every address pass: the gate would check nothing.
            raise Brc20ConfigError(
                f"BRC-20 minimum balance must be an int >= 1, got {min_balance!r}"
            )
        self._min_balance = min_balance
        self._network = resolve_network(network)
        self._provider = provider

    @property
    def ticker(self) -> str:
        return self._ticker

    @property
    def min_balance(self) -> int:
        return self._min_balance

    @property
    def network(self) -> BtcNetwork:
        return self._network

    async def check(self, btc_address: str) -> Brc20Check:
        """The holdings of `btc_address`. Raises `InvalidBtcAddress` (also for "") before
        any lookup, `Brc20Unavailable` when the provider cannot answer."""
        address = validate_btc_address(btc_address, self._network)
        holdings = await self._provider.balances(address)
        names = tuple(sorted(holdings))
        return Brc20Check(
            exists=holdings.get(self._ticker, 0) >= self._min_balance,
            names=names,
            balances=tuple(holdings[name] for name in names),
        )

    async def require(self, btc_address: str) -> Brc20Check | None:
        """Passes (returns None, no lookup) for "", as the contract says "skips if empty";
        returns the check when the address holds enough. Raises `InvalidBtcAddress`,
        `Brc20AssetMissing` (naming the ticker and the minimum), or `Brc20Unavailable`."""
        if btc_address == "":
            return None
        check = await self.check(btc_address)
        if not check.exists:
            held = dict(zip(check.names, check.balances, strict=True)).get(self._ticker, 0)
            raise Brc20AssetMissing(
                f"BTC address {btc_address} must hold at least {self._min_balance} "
                f"{self._ticker} (BRC-20); it holds {held}",
                ticker=self._ticker,
                min_balance=self._min_balance,
                balance=held,
            )
        return check

    async def aclose(self) -> None:
        await self._provider.aclose()
