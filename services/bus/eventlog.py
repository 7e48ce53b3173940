"""Events on the bus: the bridge between envelopes and byte records (through the codec)."""

from __future__ import annotations

from collections.abc import Iterable

from events import Envelope, Event, decode, encode
from services.bus.protocol import Bus, Outgoing, Record


async def publish_events(bus: Bus, events: Iterable[Envelope | Event]) -> list[Record]:
    """Encode and publish events (bare events get a fresh envelope) to their own topics,
    keyed by their own keys, as one durable batch. Returns the stored records in order."""
    envelopes = [e if isinstance(e, Envelope) else Envelope(e) for e in events]
    return await bus.publish_many([Outgoing(e.topic, e.key, encode(e)) for e in envelopes])


def decode_record(record: Record) -> Envelope:
    """The envelope held by a record. Raises `EventDecodeError` for a record that is not one."""
    return decode(record.value)
