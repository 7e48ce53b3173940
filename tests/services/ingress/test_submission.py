"""`parse_body`: `data` reaches the container as the exact bytes the client sent for it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingress.errors import BadRequest
from services.ingress.submission import parse_body

TRICKY = [
    ("big-int", '{"data": {"big": 123456789012345678901234567890}}',
     '{"big": 123456789012345678901234567890}'),
    ("huge-int", '{"data": [' + "9" * 5000 + "]}", "[" + "9" * 5000 + "]"),
    ("trailing-zero", '{"data": {"price": 1.10, "e": 1E+2, "z": -0.0}}',
     '{"price": 1.10, "e": 1E+2, "z": -0.0}'),
    ("beyond-double", '{"x": 1e400, "data": {"y": -1e400, "z": 1e-400}}',
     '{"y": -1e400, "z": 1e-400}'),
    ("whitespace", '{"data":\n  {\n    "a" :\t[ 1 , 2 ]\r\n  }\n}',
     '{\n    "a" :\t[ 1 , 2 ]\r\n  }'),
    ("brackets-and-quotes-in-strings", r'{"data": {"s": "}{][\"}", "t": "\\", "u": "\\\""}}',
     r'{"s": "}{][\"}", "t": "\\", "u": "\\\""}'),
    ("unicode-escapes", r'{"data": {"name": "caf\u00e9 \ud83d\ude00 \u0022"}}',
     r'{"name": "caf\u00e9 \ud83d\ude00 \u0022"}'),
    ("raw-utf8", '{"data": {"name": "café 😀 \u2028"}}', '{"name": "café 😀 \u2028"}'),
    ("nested-arrays", '{"data": [ {"a": [1, {"b": []}]}, "x" , [[]] ]}',
     '[ {"a": [1, {"b": []}]}, "x" , [[]] ]'),
    ("data-inside-btc-address", r'{"btc_address": "\"data\": {\"no\": 1}", "data": {"yes": 2}}',
     '{"yes": 2}'),
    ("data-key-nested-elsewhere", '{"meta": {"data": [0]}, "data": [1]}', "[1]"),
    ("data-first", '{"data": {"a": 1}, "btc_address": ""}', '{"a": 1}'),
    ("escaped-key", r'{"d\u0061ta": {"a": 1}}', '{"a": 1}'),
    ("last-duplicate-wins", '{"data": {"first": 1}, "data": {"second": 2}}', '{"second": 2}'),
    ("empty-containers", '{"data": {}}', "{}"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "payload"), [t[1:] for t in TRICKY], ids=[t[0] for t in TRICKY])
def test_objects_and_arrays_pass_through_byte_for_byte(raw: str, payload: str) -> None:
    body = parse_body(raw.encode())
    assert (body.payload, body.content_type) == (payload, "application/json")


def test_a_string_is_sent_as_its_value() -> None:
    body = parse_body(rb'{"data": "{\"a\": 1.10, \"b\": 1e400}"}')
    assert (body.payload, body.content_type) == ('{"a": 1.10, "b": 1e400}', "application/json")
    body = parse_body(rb'{"data": "caf\u00e9 {"}')
    assert (body.payload, body.content_type) == ("café {", "text/plain; charset=utf-8")


REFUSED = [
    (b'{"data": 1e400}', "data"),
    (b'{"data": 123456789012345678901234567890}', "data"),
    (b'{"data": NaN}', "body"),
    (b'{"data": {"x": -Infinity}}', "body"),
    (rb'{"data": "\ud800"}', "data"),
    (rb'{"btc_address": "\udc00x"}', "btc_address"),
    (b'{"data": ' + b"[" * 3000 + b"]" * 3000 + b"}", "body"),
    (b'{"data": ' + b"[" * 1022 + b"]" * 1022 + b"}", "data"),  # orjson's depth, not json's
    (b'{"data": "\xff"}', "body"),
    (b'\xef\xbb\xbf{"data": ""}', "body"),
    (b'{"data": {"a": 01}}', "body"),
    (b'{"data": {"a": 1,}}', "body"),
]


@pytest.mark.parametrize(("raw", "field"), REFUSED)
def test_what_is_not_json_or_not_text_is_refused(raw: bytes, field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_body(raw)
    assert caught.value.field == field


# JSON texts as a client might write them: any spacing, numbers of any size and spelling,
# strings with escapes or raw UTF-8 and full of JSON's own punctuation.
_WS = st.sampled_from(["", " ", "  ", "\n", "\n  ", "\t", "\r\n "])
_NUMBERS = st.from_regex(r"\A-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,4})?\Z")
_TEXT = st.text(st.sampled_from('{}[]",:\\ data\n\u00e9\u2028😀') | st.characters(codec="utf-8"),
                max_size=12)  # fmt: skip
_UNICODE_STRINGS = st.builds(json.dumps, _TEXT, ensure_ascii=st.booleans())
# Escaped, and so with lone surrogates too (JSON's grammar allows them, UTF-8 text cannot).
_STRINGS = _UNICODE_STRINGS | st.builds(json.dumps, st.text(st.characters(), max_size=4))


def _padded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(_WS, values, _WS).map("".join)


def _containers(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    member = st.tuples(_padded(_STRINGS), _padded(values)).map(":".join)
    arrays = st.tuples(_WS, st.lists(_padded(values), max_size=4).map(",".join))
    objects = st.tuples(_WS, st.lists(member, max_size=4).map(",".join))
    return arrays.map(lambda p: f"[{p[0]}{p[1]}]") | objects.map(lambda p: f"{{{p[0]}{p[1]}}}")


_SCALARS = _NUMBERS | _STRINGS | st.sampled_from(["true", "false", "null"])
_VALUES = st.recursive(_SCALARS, _containers, max_leaves=12)
_DATA_KEYS = st.sampled_from(['"data"', r'"d\u0061ta"', r'"\u0064\u0061\u0074\u0061"'])
_OTHER_KEYS = st.sampled_from(['"x"', '"Data"', '"data "', '"\\"data\\""', '"meta"'])


@given(
    data=_containers(_VALUES), key=_DATA_KEYS, ws=_WS,
    before=st.lists(st.tuples(_OTHER_KEYS | _DATA_KEYS, _VALUES), max_size=3),
    after=st.lists(st.tuples(_OTHER_KEYS, _VALUES), max_size=3),
    btc=st.lists(st.tuples(st.just('"btc_address"'), _UNICODE_STRINGS), max_size=1),
)  # fmt: skip
def test_any_object_or_array_reaches_the_container_as_written(
    data: str,
    key: str,
    ws: str,
    before: list[tuple[str, str]],
    after: list[tuple[str, str]],
    btc: list[tuple[str, str]],
) -> None:
    # Other members (a duplicate `data` among them), before and after, and values holding
    # `"data":` in strings or nested objects: the last top-level `data` is the one sent.
    members = [*btc, *before, (key, data), *after]
    raw = "{" + ws + ",".join(f"{ws}{k}{ws}:{ws}{v}{ws}" for k, v in members) + "}"
    body = parse_body(raw.encode())
    assert body.payload == data
    assert body.content_type == "application/json"
