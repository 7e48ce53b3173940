"""The codec round-trips every event and turns every bad input into EventDecodeError."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events import (
    EVENT_TYPES,
    Envelope,
    EventDecodeError,
    EventEncodeError,
    GpuInfo,
    NodeRegistered,
    TaskSubmitted,
    TraceContext,
    decode,
    encode,
)
from tests.events.strategies import envelopes

ALL_TYPES = sorted(EVENT_TYPES.values(), key=lambda cls: cls.__name__)


def _node() -> Envelope:
    return Envelope(
        NodeRegistered(
            "n-1", "0xabc", "127.0.0.1", "eu-1", (GpuInfo("RTX4090", 24564),), "process", "ff" * 32
        )
    )


def _task() -> Envelope:
    return Envelope(
        TaskSubmitted(
            task_id="20240415_14_30_09_891041",
            seq=2687,
            workspace_id="367614711220405248",
            userkey="ts-22a51e64",
            btc_address="",
            mode="async",
            method="schedulingTask",
            request_url="/user/schedulingTask?paramUrl=create",
            param_url="/create",
            param_port=8080,
            user_ip="94.74.66.215",
            request_body='{"gz": true}',
            gpu_type="RTX4090",
            gpu_count=1,
            timeout_s=600.0,
        )
    )


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda cls: cls.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_event_round_trips(cls: type, data: st.DataObject) -> None:
    envelope = data.draw(envelopes(cls))
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert type(decoded.event) is cls
    assert decoded.occurred_at.utcoffset() is not None


def test_wire_document_names_type_key_and_version() -> None:
    doc = orjson.loads(encode(_task()))
    assert doc["type"] == "TaskSubmitted"
    assert doc["key"] == "20240415_14_30_09_891041"
    assert doc["schema_version"] == 1
    assert doc["occurred_at"].endswith("Z")
    assert doc["data"]["param_port"] == 8080


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE = TraceContext(TRACEPARENT, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
BEFORE_TRACES = (
    b'{"event_id":"91da4bb2b87af5cf9c49ef87a2a3df4f","type":"TaskSubmitted",'
    b'"key":"20240415_14_30_09_891041","schema_version":1,'
    b'"occurred_at":"2026-12-02T01:30:03.851697Z","data":{"task_id":"20240415_14_30_09_891041",'
    b'"seq":2687,"workspace_id":"367614711220405248","userkey":"ts-22a51e64","btc_address":"",'
    b'"mode":"async","method":"schedulingTask","request_url":"/user/schedulingTask?paramUrl='
    b'create","param_url":"/create","param_port":8080,"user_ip":"94.74.66.215",'
    b'"request_body":"{\\"gz\\": true}","gpu_type":"RTX4090","gpu_count":1,"timeout_s":600.0,'
    b'"body_encoding":"utf-8","content_type":"application/json","priority":0,"ttl_s":3600.0,'
    b'"retry_on_timeout":false,"webhook":"","webhook_events":[],"idempotency_key":"",'
    b'"request_digest":"","stream":false}}'
)
"""A document as the codec wrote it before envelopes had a trace."""


def test_a_document_from_before_traces_decodes_and_encodes_to_the_same_bytes() -> None:
    envelope = decode(BEFORE_TRACES)
    assert envelope.trace is None
    assert envelope.event == _task().event
    assert encode(envelope) == BEFORE_TRACES


def test_the_trace_travels_in_the_envelope() -> None:
    traced = dataclasses.replace(_task(), trace=TRACE)
    doc = orjson.loads(encode(traced))
    assert doc["trace"] == {"traceparent": TRACE.traceparent, "tracestate": TRACE.tracestate}
    assert decode(encode(traced)) == traced
    bare = dataclasses.replace(traced, trace=TraceContext(TRACEPARENT))
    assert orjson.loads(encode(bare))["trace"] == {"traceparent": TRACEPARENT}
    assert decode(encode(bare)).trace == TraceContext(TRACEPARENT, "")
    assert "trace" not in orjson.loads(encode(_task()))


@pytest.mark.parametrize(
    "trace",
    [
        TraceContext("not a traceparent"),
        TraceContext(TRACEPARENT.upper()),
        TraceContext(TRACEPARENT, "a=b\nX-Injected: 1"),
    ],
)
def test_a_malformed_trace_is_refused_on_encode(trace: TraceContext) -> None:
    with pytest.raises(EventEncodeError):
        encode(dataclasses.replace(_task(), trace=trace))


def test_thousand_random_byte_strings_raise_the_typed_error() -> None:
    rng = random.Random(20261127)
    for _ in range(1000):
        garbage = rng.randbytes(rng.randrange(0, 200))
        with pytest.raises(EventDecodeError):
            decode(garbage)


@pytest.mark.parametrize("make", [_node, _task], ids=["node", "task"])
def test_every_truncation_of_a_document_raises_the_typed_error(make: Any) -> None:
    wire = encode(make())
    for end in range(len(wire)):
        with pytest.raises(EventDecodeError):
            decode(wire[:end])


def _mutated(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> bytes:
    copy = orjson.loads(orjson.dumps(doc))
    target = copy
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return orjson.dumps(copy)


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("type",), "TaskVanished"),
        (("type",), 7),
        (("schema_version",), 2),
        (("schema_version",), "1"),
        (("key",), "another-task"),
        (("event_id",), ""),
        (("occurred_at",), "yesterday"),
        (("occurred_at",), "2024-04-15T14:30:11"),
        (("data",), []),
        (("data", "param_port"), "eight"),
        (("data", "mode"), "sometimes"),
        (("data", "seq"), {"n": 1}),
        (("data", "task_id"), _DELETE),
        (("data", "request_body"), _DELETE),
        (("data", "surprise"), 1),
        (("extra",), True),
        (("data",), _DELETE),
        (("trace",), None),
        (("trace",), TRACEPARENT),
        (("trace",), {}),
        (("trace",), {"tracestate": "a=b"}),
        (("trace",), {"traceparent": TRACEPARENT, "baggage": "a=b"}),
        (("trace", "traceparent"), TRACEPARENT.upper()),
        (("trace", "traceparent"), TRACEPARENT + "\n"),
        (("trace", "traceparent"), "01" + TRACEPARENT[2:]),
        (("trace", "traceparent"), f"00-{'0' * 32}-00f067aa0ba902b7-01"),
        (("trace", "traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
        (("trace", "traceparent"), 7),
        (("trace", "tracestate"), ""),
        (("trace", "tracestate"), "a=b\r\nX-Injected: 1"),
        (("trace", "tracestate"), ["a=b"]),
    ],
)
def test_bad_documents_raise_the_typed_error(path: tuple[str, ...], value: Any) -> None:
    doc = orjson.loads(encode(dataclasses.replace(_task(), trace=TRACE)))
    with pytest.raises(EventDecodeError):
        decode(_mutated(doc, path, value))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(data=_json, type_name=st.sampled_from(sorted(EVENT_TYPES)))
def test_arbitrary_json_never_raises_anything_but_the_typed_error(
    data: Any, type_name: str
) -> None:
    doc = {
        "event_id": "e",
        "type": type_name,
        "key": "k",
        "schema_version": 1,
        "occurred_at": "2024-01-01T00:00:00Z",
        "data": data,
    }
    for candidate in (doc, data):
        with contextlib.suppress(EventDecodeError):
            decode(json.dumps(candidate))


def test_non_finite_floats_are_refused_on_encode() -> None:
    for value in (float("nan"), float("inf")):
        bad = Envelope(dataclasses.replace(_task().event, timeout_s=value))
        with pytest.raises(EventEncodeError):
            encode(bad)


def test_events_are_frozen_and_slotted() -> None:
    event = _node().event
    assert not hasattr(event, "__dict__")
    with pytest.raises(AttributeError):
        event.host = "10.0.0.1"  # type: ignore[misc]
