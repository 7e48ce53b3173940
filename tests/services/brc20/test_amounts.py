"""Balances keep their integer part, exactly; tickers are upper-cased."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.brc20.amounts import collect_holdings, normalize_ticker, parse_balance


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, 0),
        (100, 100),
        ("100", 100),
        ("100.5", 100),
        ("100.999999999999999999", 100),  # truncated, never rounded up
        ("500.000000000000000000", 500),  # Hiro's 18 decimals
        ("18446744073709551615.000000000000000000", 18446744073709551615),  # u64 max supply
        ("0.9", 0),
        ("7.", 7),
        (Decimal("2.75"), 2),
        (Decimal("1E+3"), 1000),
    ],
)
def test_parse_balance_keeps_the_integer_part(raw: object, expected: int) -> None:
    assert parse_balance(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [-1, "-1", "1e5", "NaN", "inf", " 1", "1_000", "", ".5", "0x10", 1.5, True, None, [1],
     Decimal("NaN"), Decimal("-0.5"), Decimal("1E+80"), "9" * 41, 10**41],
)  # fmt: skip
def test_parse_balance_refuses_anything_else(raw: object) -> None:
    with pytest.raises(ValueError, match="balance"):
        parse_balance(raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [("ainn", "AINN"), ("OrDi", "ORDI"), ("$ore", "$ORE")]
)
def test_tickers_are_upper_cased(raw: str, expected: str) -> None:
    assert normalize_ticker(raw) == expected


@pytest.mark.parametrize("raw", ["", " AINN", "AI\nNN", 5, None])
def test_bad_tickers_are_refused(raw: object) -> None:
    with pytest.raises(ValueError, match="ticker"):
        normalize_ticker(raw)


def test_collect_drops_zero_balances_and_merges_case() -> None:
    rows = [("ainn", "3.2"), ("dust", "0.4"), ("AINN", "3"), ("ordi", 0)]
    assert collect_holdings(rows) == {"AINN": 3}


def test_collect_refuses_one_ticker_with_two_balances() -> None:
    with pytest.raises(ValueError, match="AINN is listed twice"):
        collect_holdings([("AINN", "3"), ("ainn", "4")])
