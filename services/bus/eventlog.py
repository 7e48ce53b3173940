"""Events on the bus: the bridge between envelopes and byte records (through the codec)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from events import Envelope, Event, decode, encode
from services.bus.protocol import Bus, Outgoing, Record

_RECENT_DECODES = 2048
_DECODE_ONCE_MAX_BYTES = 16 * 1024
# id(record) -> (record, envelope). Holding the record keeps its id from being reused.
_recent: OrderedDict[int, tuple[Record, Envelope]] = OrderedDict()


async def publish_events(bus: Bus, events: Iterable[Envelope | Event]) -> list[Record]:
    """Encode and publish events (bare events get a fresh envelope) to their own topics,
    keyed by their own keys, as one durable batch. Returns the stored records in order."""
    envelopes = [e if isinstance(e, Envelope) else Envelope(e) for e in events]
    return await bus.publish_many([Outgoing(e.topic, e.key, encode(e)) for e in envelopes])


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
