"""`rawjson`: every number JSON allows, and the bytes of a member's value."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.ingress import rawjson


def test_numbers_beyond_a_double_are_read_as_decimals() -> None:
    assert rawjson.loads(b'{"a": 1e400, "b": 1.10}') == {
        "a": Decimal("1e400"),
        "b": Decimal("1.10"),
    }
    assert rawjson.loads(b'{"a": 1.10}') == {"a": 1.1}  # orjson's answer, when it has one


@pytest.mark.parametrize(
    "raw", [b"NaN", b"[Infinity]", b'{"a": -Infinity, "b": 1e400}', b"[1e400", b"\xff", b""]
)
def test_what_json_does_not_allow_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        rawjson.loads(raw)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b'{"a": 1}', None),
        (b'{"x": {"data": 1}, "y": ["data", 2]}', None),
        (b' {"data" : true }', "true"),
        (b'{"data":"a\\"b","z":0}', '"a\\"b"'),
        (b'{"data": 1, "data": [2 ]}', "[2 ]"),
        ('{"d\\u0061ta": {"é": 1.10}}'.encode(), '{"é": 1.10}'),
    ],
)
def test_member_text_is_that_of_the_last_top_level_member(raw: bytes, text: str | None) -> None:
    assert rawjson.member_text(raw, "data") == text
