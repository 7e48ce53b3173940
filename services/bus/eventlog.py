"""Events on the bus: the bridge between envelopes and byte records (through the codec)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace

from events import Envelope, Event, decode, encode
from services import tracing
from services.bus.protocol import Bus, Outgoing, Record

_RECENT_DECODES = 2048
_DECODE_ONCE_MAX_BYTES = 16 * 1024
# id(record) -> (record, envelope). Holding the record keeps its id from being reused.
_recent: OrderedDict[int, tuple[Record, Envelope]] = OrderedDict()


async def publish_events(bus: Bus, events: Iterable[Envelope | Event]) -> list[Record]:
    """Encode and publish events (bare events get a fresh envelope) to their own topics,
    keyed by their own keys, as one durable batch. Returns the stored records in order.

    With traces on and a span current, the batch is published in a `publish <topics>`
    producer span whose context every envelope without a trace of its own carries."""
    if tracing.ENABLED and tracing.in_span():
        return await _publish_traced(bus, events)
    envelopes = [e if isinstance(e, Envelope) else Envelope(e) for e in events]
    return await bus.publish_many([Outgoing(e.topic, e.key, encode(e)) for e in envelopes])


async def _publish_traced(bus: Bus, events: Iterable[Envelope | Event]) -> list[Record]:
    envelopes = [e if isinstance(e, Envelope) else Envelope(e) for e in events]
    destinations = ",".join(sorted({e.topic for e in envelopes}))
    attributes: dict[str, tracing.AttributeValue] = {
        "messaging.operation.type": "send",
        "messaging.destination.name": destinations,
        "messaging.batch.message_count": len(envelopes),
        "ngpu.events": sorted({e.type for e in envelopes}),
    }
    with tracing.span(f"publish {destinations}", kind=tracing.SpanKind.PRODUCER,
                      attributes=attributes):  # fmt: skip
        trace = tracing.current_trace()
        traced = [e if e.trace is not None else replace(e, trace=trace) for e in envelopes]
        return await bus.publish_many([Outgoing(e.topic, e.key, encode(e)) for e in traced])


def decode_record(record: Record) -> Envelope:
    """The envelope held by a record. Raises `EventDecodeError` for a record that is not one.

    The embedded bus hands the same `Record` object to every consumer in its process (the
    scheduler, dispatcher, followers and projector of `ngpu up`), so the envelopes of the
    latest records of up to 16 KiB are kept by record identity: each is decoded once, not
    once per consumer. Envelopes and events are frozen; callers must not mutate them."""
    hit = _recent.get(id(record))
    if hit is not None and hit[0] is record:
        return hit[1]
    envelope = decode(record.value)
    if len(record.value) <= _DECODE_ONCE_MAX_BYTES:
        _recent[id(record)] = (record, envelope)
        while len(_recent) > _RECENT_DECODES:
            try:
                _recent.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                break
    return envelope
