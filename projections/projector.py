"""The projector role: folds the bus into the projection tables.

It consumes every topic as consumer group `projector`, decodes each record (an
undecodable one is logged and skipped), writes a fetched batch through the
`ProjectionWriter` in a worker thread (chdb has no async client) and commits the
offsets only after the write returned: at-least-once delivery, effectively-once
results because the tables are idempotent under replay. A failed write is retried
(with backoff) until it succeeds; nothing is committed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from events import Envelope, EventDecodeError, topics
from projections.archive import split_archived_bodies
from projections.errors import StoreError
from projections.writer import ProjectionWriter
from services.bus import Bus, BusError, Consumer, Record, decode_record
from services.bus.progress import catching_up
from services.metrics import sources
from services.readiness import Component

log = logging.getLogger(__name__)

GROUP = "projector"
"""The consumer group of the projector role."""


@dataclass(slots=True)
class ProjectorStats:
    """Counters since this projector started (for tests, benchmarks, metrics)."""

    records: int = 0
    """Records fetched."""
    skipped: int = 0
    """Undecodable records skipped."""
    written: int = 0
    """Distinct events written (per batch)."""
    batches: int = 0
    """Batches written."""
    committed: int = 0
    """Records whose offsets were committed."""
    failed_writes: int = 0
    """Write attempts that failed and were retried."""
    last_event_at: datetime | None = None
    """The time of the newest event written (its envelope's)."""


def decode_batch(records: Sequence[Record]) -> tuple[list[Envelope], int]:
    """The envelopes of `records` in order, and how many were undecodable (skipped)."""
    envelopes: list[Envelope] = []
    skipped = 0
    for record in records:
        try:
            envelopes.append(decode_record(record))
        except EventDecodeError as exc:
            skipped += 1
            log.warning(
                "skipping undecodable record %s[%d]@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                exc,
            )
    return envelopes, skipped


class Projector:
    """Runs the projector role on `bus` into `writer`'s database (see the module doc).
    A batch is what the log holds, plus what arrives within `linger_s`, up to
    `batch_size` records. `flush()` ends the linger early, for a reader in the same
    process that waits for a task's projection, but never before `flush_linger_s`: however
    often readers ask, batches are written at most about that often. `ready` is caught up
    once what the log held at the start (from the group's position) is written."""

    def __init__(
        self,
        bus: Bus,
        writer: ProjectionWriter,
        *,
        group: str = GROUP,
        batch_size: int = 5000,
        fetch_timeout_s: float = 1.0,
        retry_min_s: float = 0.2,
        retry_max_s: float = 30.0,
        linger_s: float = 1.0,
        flush_linger_s: float = 0.25,
        ready: Component | None = None,
    ) -> None:
        self.bus = bus
        self.ready = ready or Component("projector")
        self.writer = writer
        self.group = group
        self.batch_size = batch_size
        self.fetch_timeout_s = fetch_timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.linger_s = linger_s
        self.flush_linger_s = min(flush_linger_s, linger_s)
        self.stats = ProjectorStats()
        self._flush_requested = asyncio.Event()
        sources.watch_projector(self)

    def flush(self) -> None:
        """Write the current batch once it has gathered for `flush_linger_s`, rather than
        at the end of its linger (between batches: the next batch). Safe to call at any
        rate."""
        self._flush_requested.set()

    async def run(self) -> None:
        """Create (or migrate) the tables if needed, then project until cancelled."""
        await asyncio.to_thread(self.writer.ensure_schema)
        await asyncio.to_thread(split_archived_bodies, self.writer.client, self.writer.database)
        consumer = self.bus.consumer(topics.HISTORY_TOPICS, group=self.group, start="earliest")
        sources.watch_consumer(self.group, consumer)
        async with consumer:
            catch_up = await catching_up("projector", consumer, on_done=self.ready.mark_caught_up)
            while True:
                if not catch_up.done:  # everything fetched so far is written
                    catch_up.at(await consumer.positions())
                records = await self._gather(consumer)
                if not records:
                    continue
                envelopes, skipped = decode_batch(records)
                self.stats.records += len(records)
                self.stats.skipped += skipped
                if envelopes:
                    await self._write(envelopes)
                    self.stats.batches += 1
                try:
                    await consumer.commit()
                except BusError as exc:
                    # A rebalance took the partitions first (their new owner projects
                    # these records again), or the bus cannot store offsets now (the next
                    # batch's commit covers them): the tables absorb either (idempotent).
                    log.warning("projector commit failed, records may come again: %s", exc)
                    continue
                self.stats.committed += len(records)

    async def _gather(self, consumer: Consumer) -> list[Record]:
        """A batch: what is there now, then what arrived within `linger_s` (or until
        `flush()`), up to `batch_size`. Every insert costs CPU whatever its size (about
        8 ms per table in chdb, plus background merges of the parts it makes), and it
        competes with the roles a sync call waits on: ClickHouse's advice is about one
        insert per table per second, hence the default linger of 1 s. The linger is not
        a wait on the log: in `ngpu up` the projector shares the event loop with those
        roles, and waking it for every record cost them each a fetch."""
        records = await consumer.fetch(self.batch_size, timeout_s=self.fetch_timeout_s)
        if records and len(records) < self.batch_size and self.linger_s > 0:
            loop = asyncio.get_running_loop()
            flushable_at = loop.time() + self.flush_linger_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_requested.wait(), self.linger_s)
            if (early_by := flushable_at - loop.time()) > 0:  # flushed: gather a little more
                await asyncio.sleep(early_by)
            records += await consumer.fetch(self.batch_size - len(records), timeout_s=0)
        self._flush_requested.clear()
        return records

    async def _write(self, envelopes: list[Envelope]) -> None:
        """Write the batch, retrying until it is stored."""
        delay = self.retry_min_s
        while True:
            try:
                self.stats.written += await asyncio.to_thread(self.writer.write, envelopes)
                self.stats.last_event_at = max(e.occurred_at for e in envelopes)
                return
            except StoreError:
                self.stats.failed_writes += 1
                log.exception("projection write failed; retrying in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(self.retry_max_s, delay * 2)
            try:
                # The tables may be what is missing (e.g. dropped or a fresh server).
                await asyncio.to_thread(self.writer.ensure_schema)
            except StoreError:
                log.warning("cannot create the projection tables yet")
