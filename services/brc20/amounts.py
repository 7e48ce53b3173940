"""Tickers and balances as the gate sees them.

Balances are typed `int`, the contract's `balances: []int`. Indexers report BRC-20
amounts as decimal strings with up to 18 decimals ("100.5", "500.000000000000000000");
the gate keeps the integer part (truncation, never rounding up), parsed from the digits
themselves so no float ever touches an amount. A holding whose integer part is 0 is left
out, so `balances` never lists a 0 and `exists` never passes on a fraction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

# BRC-20 caps supply at uint64 with 18 decimals; 40 digits leave room and keep int() cheap.
_MAX_DIGITS = 40
_DECIMAL = re.compile(r"([0-9]{1,40})(?:\.[0-9]{0,40})?")


def normalize_ticker(value: object) -> str:
    """The ticker upper-cased (BRC-20 tickers are case-insensitive). Raises `ValueError`
    for a non-string, an empty string or control characters."""
    if not isinstance(value, str):
        raise ValueError(f"ticker must be a string, got {type(value).__name__}")
    if not value or not value.isprintable() or value != value.strip():
        raise ValueError(f"ticker {value!r} is empty or has spaces or control characters")
    return value.upper()


def parse_balance(value: object) -> int:
    """The integer part of a non-negative balance given as an int, a decimal string or a
    `Decimal`. Raises `ValueError` for anything else (negative, float, NaN, exponent
    notation, bool, more than 40 integer digits)."""
    if isinstance(value, bool):
        raise ValueError("balance must be a number, got a boolean")
    if isinstance(value, int):
        if value < 0 or len(str(value)) > _MAX_DIGITS:
            raise ValueError(f"balance {value} is negative or too large")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0 or value.adjusted() >= _MAX_DIGITS:
            raise ValueError(f"balance {value} is not a finite, non-negative amount")
        return int(value)  # truncates toward zero
    if isinstance(value, str):
        match = _DECIMAL.fullmatch(value)
        if match is None:
            raise ValueError(f"balance {value!r} is not a plain non-negative decimal")
        return int(match.group(1))
    raise ValueError(f"balance must be an integer or a decimal string, got {type(value).__name__}")


def collect_holdings(rows: Iterable[tuple[object, object]]) -> dict[str, int]:
    """`{TICKER: balance}` from raw (ticker, balance) pairs, zero balances left out.
    Raises `ValueError` on a bad ticker or balance, or one ticker listed twice with two
    different balances (pages that shifted under us)."""
    holdings: dict[str, int] = {}
    for raw_ticker, raw_balance in rows:
        ticker = normalize_ticker(raw_ticker)
        balance = parse_balance(raw_balance)
        if ticker in holdings and holdings[ticker] != balance:
            raise ValueError(f"ticker {ticker} is listed twice with different balances")
        holdings[ticker] = balance
    return {ticker: balance for ticker, balance in holdings.items() if balance > 0}
