"""The one wire format of events: a JSON document (orjson) of the envelope and the data.

    {"event_id": "...", "type": "TaskSubmitted", "key": "...", "schema_version": 1,
     "occurred_at": "2024-04-15T14:30:11.123456Z", "data": {...the event's fields...},
     "trace": {"traceparent": "00-...-...-01", "tracestate": "..."}}

`trace` is written only for an envelope that has one (`tracestate` only when not empty):
an envelope without one encodes to the same bytes as before traces existed, and documents
without it decode as they always did.

`decode` accepts exactly what `encode` writes (plus lossless coercions); anything else —
garbage bytes, truncated JSON, an unknown type or version, a missing, extra or mistyped
field, a key that does not match the event, a malformed trace context — raises
`EventDecodeError` and nothing else.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from datetime import datetime
from typing import Any

import orjson
from pydantic import ConfigDict, TypeAdapter, ValidationError

from events.base import Event
from events.envelope import Envelope, TraceContext
from events.errors import EventDecodeError, EventEncodeError
from events.registry import EVENT_TYPES

_ENVELOPE_FIELDS = frozenset({"event_id", "type", "key", "schema_version", "occurred_at", "data"})
_OPTIONAL_FIELDS = frozenset({"trace"})
_ALL_FIELDS = _ENVELOPE_FIELDS | _OPTIONAL_FIELDS
TRACEPARENT_PATTERN = r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$"
"""W3C Trace Context version 00, neither id all zeros (the JSON Schemas use it too)."""
TRACESTATE_PATTERN = r"^[\x20-\x7e]+$"
"""Printable ASCII: it goes into an HTTP header as it is."""
_TRACEPARENT = re.compile(TRACEPARENT_PATTERN)
_TRACESTATE = re.compile(TRACESTATE_PATTERN)
_DUMP_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
_STRICT_FIELDS = ConfigDict(extra="forbid")
_DATETIME = TypeAdapter(datetime)


_ADAPTERS: dict[type[Event], TypeAdapter[Any]] = {}


def _adapter(cls: type[Event]) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        _forbid_extra_fields(cls)
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def _forbid_extra_fields(cls: type) -> None:
    # Validation config lives here, with the wire format, so event classes stay plain data.
    cls.__pydantic_config__ = _STRICT_FIELDS  # type: ignore[attr-defined]
    pending = list(typing.get_type_hints(cls).values())
    while pending:
        hint = pending.pop()
        pending.extend(typing.get_args(hint))
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            _forbid_extra_fields(hint)


def to_document(envelope: Envelope) -> dict[str, Any]:
    """The envelope as a JSON-ready dict (the event's data as a dataclass, which orjson
    writes natively). Used by `encode` and by tools that print events."""
    doc = {
        "event_id": envelope.event_id,
        "type": envelope.type,
        "key": envelope.key,
        "schema_version": envelope.schema_version,
        "occurred_at": envelope.occurred_at,
        "data": envelope.event,
    }
    trace = envelope.trace
    if trace is not None:
        doc["trace"] = (
            {"traceparent": trace.traceparent, "tracestate": trace.tracestate}
            if trace.tracestate
            else {"traceparent": trace.traceparent}
        )
    return doc


def encode(envelope: Envelope) -> bytes:
    """Serialize an envelope. Raises `EventEncodeError` for values JSON cannot hold
    faithfully (NaN or infinite floats, strings that are not valid Unicode) and for a
    malformed trace context (`decode` would refuse it)."""
    _reject_non_finite(envelope.event)
    if envelope.trace is not None and not _well_formed(envelope.trace):
        raise EventEncodeError(f"cannot encode {envelope.type}: malformed {envelope.trace}")
    try:
        return orjson.dumps(to_document(envelope), option=_DUMP_OPTIONS)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise EventEncodeError(f"cannot encode {envelope.type}: {exc}") from exc


def _reject_non_finite(event: Event) -> None:
    for spec in dataclasses.fields(event):
        value = getattr(event, spec.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise EventEncodeError(f"{type(event).__name__}.{spec.name} is not finite: {value}")


def decode(data: bytes | bytearray | memoryview | str) -> Envelope:
    """Parse one envelope written by `encode`. Raises only `EventDecodeError`."""
    try:
        doc = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise EventDecodeError(f"not a JSON document: {exc}") from exc
    if not isinstance(doc, dict):
        raise EventDecodeError(f"expected a JSON object, got {type(doc).__name__}")
    missing = _ENVELOPE_FIELDS - doc.keys()
    extra = doc.keys() - _ALL_FIELDS
    if missing or extra:
        raise EventDecodeError(
            f"envelope fields: missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    cls = EVENT_TYPES.get(doc["type"]) if isinstance(doc["type"], str) else None
    if cls is None:
        raise EventDecodeError(f"unknown event type {doc['type']!r}")
    if type(doc["schema_version"]) is not int or doc["schema_version"] != cls.VERSION:
        raise EventDecodeError(
            f"{cls.__name__}: unsupported schema_version {doc['schema_version']!r}"
        )
    if not isinstance(doc["event_id"], str) or not doc["event_id"]:
        raise EventDecodeError("event_id must be a non-empty string")
    try:
        event = _adapter(cls).validate_python(doc["data"])
        occurred_at = _DATETIME.validate_python(doc["occurred_at"])
    except ValidationError as exc:
        raise EventDecodeError(f"{cls.__name__}: {_summarize(exc)}") from exc
    if occurred_at.tzinfo is None:
        raise EventDecodeError("occurred_at must carry a timezone")
    if doc["key"] != event.key:
        raise EventDecodeError(f"key {doc['key']!r} does not match the event's {event.key!r}")
    trace = _trace_context(doc["trace"]) if "trace" in doc else None
    return Envelope(event=event, event_id=doc["event_id"], occurred_at=occurred_at, trace=trace)


def _trace_context(value: Any) -> TraceContext:
    if not isinstance(value, dict) or not value.keys() <= {"traceparent", "tracestate"}:
        raise EventDecodeError("trace must be an object of traceparent and tracestate")
    parent = value.get("traceparent")
    if not isinstance(parent, str) or not _TRACEPARENT.fullmatch(parent):
        raise EventDecodeError(f"trace.traceparent is malformed: {parent!r}")
    if "tracestate" not in value:
        return TraceContext(parent)
    state = value["tracestate"]
    if not isinstance(state, str) or not _TRACESTATE.fullmatch(state):
        raise EventDecodeError("trace.tracestate must be non-empty printable ASCII")
    return TraceContext(parent, state)


def _well_formed(trace: TraceContext) -> bool:
    return (
        isinstance(trace.traceparent, str)
        and _TRACEPARENT.fullmatch(trace.traceparent) is not None
        and isinstance(trace.tracestate, str)
        and (not trace.tracestate or _TRACESTATE.fullmatch(trace.tracestate) is not None)
    )


def event_from_data(cls: type[Event], data: Any) -> Event:
    """Build a `cls` event from the `data` part of a wire document (a JSON-decoded dict).
    Raises `EventDecodeError` like `decode`."""
    try:
        event: Event = _adapter(cls).validate_python(data)
    except ValidationError as exc:
        raise EventDecodeError(f"{cls.__name__}: {_summarize(exc)}") from exc
    return event


def _summarize(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<data>'}: {err['msg']}"
        for err in exc.errors()[:5]
    )


_TRACE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The W3C Trace Context of the span that emitted the event; present only "
    "when traces are on (services/tracing.py).",
    "additionalProperties": False,
    "required": ["traceparent"],
    "properties": {
        "traceparent": {"type": "string", "pattern": TRACEPARENT_PATTERN},
        "tracestate": {"type": "string", "pattern": TRACESTATE_PATTERN},
    },
}


def event_json_schema(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema of `cls` on the wire: the envelope with `data` holding its fields."""
    data_schema = _adapter(cls).json_schema()
    defs = data_schema.pop("$defs", None)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://ngpu.ai/schemas/events/{cls.__name__}.json",
        "title": cls.__name__,
        "description": inspect.cleandoc(cls.__doc__ or ""),
        "type": "object",
        "additionalProperties": False,
        "required": sorted(_ENVELOPE_FIELDS),
        "properties": {
            "event_id": {"type": "string", "minLength": 1},
            "type": {"const": cls.__name__},
            "key": {"type": "string", "description": f"the value of data.{cls.KEY_FIELD}"},
            "schema_version": {"const": cls.VERSION},
            "occurred_at": {"type": "string", "format": "date-time"},
            "data": data_schema,
            "trace": _TRACE_SCHEMA,
        },
        "x-topic": cls.TOPIC,
        "x-key-field": cls.KEY_FIELD,
    }
    if defs:
        schema["$defs"] = defs
    return schema
