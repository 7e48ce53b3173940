"""Hypothesis strategies that build any event from its type hints."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from events import Envelope, Event, TraceContext

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_FLOAT = st.floats(allow_nan=False, allow_infinity=False)
_TEXT = st.text(max_size=40)
_TIME = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


def for_type(hint: Any) -> st.SearchStrategy[Any]:
    """A strategy for values of the type hint `hint` as used in event fields."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is tuple:
        return st.lists(for_type(args[0]), max_size=4).map(tuple)
    if origin is dict:
        return st.dictionaries(for_type(args[0]), for_type(args[1]), max_size=4)
    if dataclasses.is_dataclass(hint):
        return for_dataclass(hint)  # type: ignore[arg-type]
    simple = {str: _TEXT, int: _INT64, float: _FLOAT, bool: st.booleans(), datetime: _TIME}
    return simple[hint]


def for_dataclass(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: for_type(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


_TRACEPARENT = st.builds(
    "00-{:032x}-{:016x}-{:02x}".format,
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.integers(0, 255),
)
TRACES = st.builds(
    TraceContext,
    traceparent=_TRACEPARENT,
    tracestate=st.just("") | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E)),
)
"""Any trace context the codec writes."""


def envelopes(cls: type[Event]) -> st.SearchStrategy[Envelope]:
    return st.builds(
        Envelope, event=for_dataclass(cls), event_id=st.uuids().map(str), occurred_at=_TIME,
        trace=st.none() | TRACES,
    )  # fmt: skip
