"""`ngpu events tail`: the event log as JSON lines, for operators and tests."""

from __future__ import annotations

import logging
from typing import BinaryIO

import orjson

from events import EventDecodeError, to_document
from services.bus import Record, StartAt, bus_from_settings, decode_record
from services.settings import Settings

log = logging.getLogger(__name__)
_IDLE_FETCH_S = 0.05


def record_line(record: Record) -> bytes:
    """One JSON line for a record: the envelope plus where it sits in the log. A record
    that does not decode becomes a line with an `error` field, so nothing is hidden."""
    where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    try:
        doc = {**where, **to_document(decode_record(record))}
    except EventDecodeError as exc:
        doc = {**where, "key": record.key, "error": str(exc)}
    return orjson.dumps(doc, option=orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE)


async def tail_events(
    settings: Settings,
    *,
    topics: tuple[str, ...],
    group: str | None,
    from_beginning: bool,
    follow: bool,
    out: BinaryIO,
) -> int:
    """Write the log's records as JSON lines to `out`; returns how many. Without `follow`
    it stops once it has caught up with the log. With a group it commits after each
    written batch, so the next tail of that group continues where this one stopped."""
    bus = bus_from_settings(settings)
    await bus.start()
    written = 0
    try:
        if not follow and group is None and from_beginning:
            # Exactly the log as of now, however long the first fetch takes (Kafka).
            lines = [record_line(r) async for r in bus.replay(topics)]
            out.write(b"".join(lines))
            out.flush()
            return len(lines)
        start: StartAt = "earliest" if from_beginning else "latest"
        async with bus.consumer(topics, group=group, start=start) as consumer:
            while True:
                batch = await consumer.fetch(500, timeout_s=1.0 if follow else _IDLE_FETCH_S)
                if not batch:
                    if follow:
                        continue
                    return written
                out.write(b"".join(record_line(r) for r in batch))
                out.flush()
                written += len(batch)
                if group is not None:
                    await consumer.commit()
    finally:
        await bus.close()
