"""The envelope every event travels in: identity, time, key, schema version and, when
traces are on, the trace context of the work that emitted it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from events.base import Event, utc_now


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A W3C Trace Context, as its HTTP headers spell it: `traceparent` is
    `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>` (neither id all zeros),
    `tracestate` the vendors' entries ("" when there are none). Opaque to every reader but
    `services.tracing`; the codec checks the form."""

    traceparent: str
    tracestate: str = ""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event with its metadata. `event_id` is unique per event (consumers that must be
    idempotent dedupe on it): 128 random bits in hex. They come from `random` (seeded from
    the OS at start and in every forked child), not `os.urandom`: an id is no secret, and
    `os.urandom` releases the GIL, which a busy worker thread may then keep for the 5 ms
    switch interval. `occurred_at` is timezone-aware UTC. `trace` is the trace context of
    the span that emitted the event, None when traces are off (`services.tracing`)."""

    event: Event
    event_id: str = field(default_factory=lambda: f"{random.getrandbits(128):032x}")
    occurred_at: datetime = field(default_factory=utc_now)
    trace: TraceContext | None = None

    @property
    def type(self) -> str:
        return type(self.event).__name__

    @property
    def key(self) -> str:
        return self.event.key

    @property
    def topic(self) -> str:
        return self.event.TOPIC

    @property
    def schema_version(self) -> int:
        return self.event.VERSION
