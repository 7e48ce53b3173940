"""JSON as the client wrote it: parsing that accepts every number JSON allows, and the
text of a member's value as written, so that a value can be passed on byte for byte
(orjson turns `1.10` into `1.1` and a 30-digit integer into a float; it refuses `1e400`)."""

from __future__ import annotations

import re
from decimal import Decimal
from json import JSONDecoder
from typing import Any

import orjson


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = JSONDecoder(parse_int=Decimal, parse_float=Decimal, parse_constant=_not_json)


def loads(raw: bytes) -> Any:
    """The JSON document `raw` (UTF-8), or `ValueError` saying what is wrong.

    orjson first (fast); what it refuses is tried again with the standard library, which
    reads numbers beyond a double's range as `Decimal` (JSON puts no limit on them) and
    also accepts a lone surrogate escape (`"\\ud800"`, which JSON's grammar allows: a
    caller decoding a string from the result must check it encodes). NaN and Infinity,
    which are not JSON, stay refused."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # the standard library's verdict is the one that counts
    try:
        return _DECODER.decode(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("the document is nested too deeply") from None


def member_text(raw: bytes, name: str) -> str | None:
    """The text of the value of member `name` of the JSON object `raw`, exactly as written
    (the last one when the name repeats: the one parsers keep); None when there is none.

    `raw` must be a JSON object `loads` accepted: the walk relies on that (on anything else
    it may answer nonsense or raise `ValueError`). Member names are compared with their
    escapes decoded (`"d\\u0061ta"` is `data`). Each value is skipped by the standard
    library's C scanner, so the walk costs about one more parse, whatever the value holds."""
    text = raw.decode()
    found = None
    pos = _skip(text, 0) + 1  # past the "{"
    while True:
        pos = _skip(text, pos)
        if text[pos] == "}":
            return found
        key, pos = _DECODER.raw_decode(text, pos)
        start = _skip(text, _skip(text, pos) + 1)  # past the ":"
        try:
            _, end = _DECODER.raw_decode(text, start)
        except RecursionError:
            raise ValueError("the document is nested too deeply") from None
        if key == name:
            found = text[start:end]
        pos = _skip(text, end)
        if text[pos] == ",":
            pos += 1


def _skip(text: str, pos: int) -> int:
    """`pos` past any whitespace."""
    found = _WS.match(text, pos)
    assert found is not None, "matches the empty string"
    return found.end()
