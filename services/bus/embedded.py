"""The embedded bus: a durable, partitioned log in one SQLite file (WAL, synchronous commits).

One writer thread owns the write connection and commits in groups: every publish or
offset commit queued while a transaction is being written goes into the next one, so
concurrent publishers share an fsync (group commit). Reads run on one reader thread.
Consumers in this process wake as soon as a publish commits; records written by another
process are seen within `poll_interval_s` (an idle consumer runs one indexed query per
interval, no busy loop). Consumer groups coordinate within one process (the embedded mode
runs its roles in one process); their committed offsets persist across restarts.

A transaction the file cannot take (a full disk, an I/O error) fails every write in it
with `BusUnavailable` and stores nothing of them; the writer carries on, and the next
transaction simply tries again. The outage is logged once per 10 s (`OutageLog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from services.bus.errors import BusError, BusUnavailable
from services.bus.outage import OutageLog
from services.bus.protocol import Outgoing, Record, StartAt

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    ts_ms INTEGER NOT NULL,
    UNIQUE (topic, partition, offset)
);
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"""
_MAX_OPS_PER_TRANSACTION = 256
_PAGE = 1000
_TAIL_RECORDS = 10_000
_TAIL_BYTES = 32 << 20
"""The memory of recent writes keeps about this many records and bytes (twice at most
before it is trimmed): large bodies shorten it, they never grow it past the cap."""
_CLOSE = object()


def partition_for(key: str, partitions: int) -> int:
    """The partition of `key`: a stable hash, so a key always lands in the same place."""
    return zlib.crc32(key.encode()) % partitions


_UNAVAILABLE_CODES = frozenset({
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL,
})  # fmt: skip
"""SQLite's primary result codes for a file that cannot take a write now and may later: a
full disk, an I/O error, a lock held past the timeout, no memory, a read-only remount."""


def _write_failure(exc: BaseException) -> BusError:
    """A write that failed, nothing of it stored, as the bus's error: `BusUnavailable`
    when the file may take it later (the HTTP layer answers 503), else `BusError`."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        failure: BusError = BusUnavailable(f"the embedded bus cannot store writes now: {exc}")
    else:
        failure = BusError(f"embedded bus write failed: {exc}")
    failure.__cause__ = exc
    return failure


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    # Pages freed by retention can be given back to the file system (a no-op on a file
    # created before this setting: it reuses freed pages instead).
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@dataclass(slots=True)
class BusStats:
    """Counters of one `EmbeddedBus` since it started (for tests, benchmarks, metrics)."""

    transactions: int = 0
    records_written: int = 0
    reads: int = 0


@dataclass(slots=True)
class _Op:
    """A unit of write work run inside the writer's transaction."""

    run: Callable[[sqlite3.Connection], Any]
    topics: tuple[str, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class EmbeddedBus:
    """The `Bus` on a SQLite file. Use from one event loop; `start()` before anything else."""

    def __init__(self, path: Path, partitions: int = 8, poll_interval_s: float = 0.2) -> None:
        self.path = Path(path)
        self.default_partitions = partitions
        self.poll_interval_s = poll_interval_s
        self._partitions: dict[str, int] = {}
        self._next_offsets: dict[tuple[str, int], int] = {}
        self._ops: queue.SimpleQueue[_Op | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ngpu-bus-read")
        self._read_conn: sqlite3.Connection | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeups: dict[str, asyncio.Future[None]] = {}
        self._groups: dict[str, _Group] = {}
        self._closed = False
        self.stats = BusStats()
        self._outage = OutageLog("embedded bus", log)  # the writer thread's
        self._written: list[tuple[int, Record]] = []  # the writer thread's transaction
        self._tail: list[tuple[int, Record]] = []  # contiguous by seq; the loop's copy
        self._tail_bytes = 0

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_conn = _connect(self.path)
        self._write_conn.executescript(_SCHEMA)
        self._read_conn = _connect(self.path)
        self._writer = threading.Thread(target=self._write_loop, name="ngpu-bus-write", daemon=True)
        self._writer.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for group in list(self._groups.values()):
            for member in list(group.members):
                await member.close()
        if self._writer is not None:
            self._ops.put(_CLOSE)
            await asyncio.to_thread(self._writer.join)
        self._reader.shutdown(wait=True)
        for conn in (self._write_conn, self._read_conn):
            if conn is not None:
                conn.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # publishing --------------------------------------------------------------------------

    async def publish(self, topic: str, key: str, value: bytes) -> Record:
        (record,) = await self.publish_many([Outgoing(topic, key, value)])
        return record

    async def publish_many(self, records: Sequence[Outgoing]) -> list[Record]:
        items = list(records)
        if not items:
            return []
        result: list[Record] = await self._submit(
            lambda conn: self._append(conn, items), tuple({r.topic for r in items})
        )
        return result

    def _append(self, conn: sqlite3.Connection, items: list[Outgoing]) -> list[Record]:
        now_ms = int(time.time() * 1000)
        stored = []
        for item in items:
            partition = partition_for(item.key, self._partition_count(conn, item.topic))
            offset = self._next_offset(conn, item.topic, partition)
            cursor = conn.execute(
                "INSERT INTO records (topic, partition, offset, key, value, ts_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (item.topic, partition, offset, item.key, item.value, now_ms),
            )
            self._next_offsets[(item.topic, partition)] = offset + 1
            record = Record(item.topic, partition, offset, item.key, item.value, now_ms)
            self._written.append((int(cursor.lastrowid or 0), record))
            stored.append(record)
        return stored

    def _partition_count(self, conn: sqlite3.Connection, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            conn.execute(
                "INSERT OR IGNORE INTO topics (name, partitions) VALUES (?, ?)",
                (topic, self.default_partitions),
            )
            (count,) = conn.execute(
                "SELECT partitions FROM topics WHERE name = ?", (topic,)
            ).fetchone()
            if count != self.default_partitions:
                log.warning(
                    "topic %s keeps its %d partitions (setting says %d)",
                    topic,
                    count,
                    self.default_partitions,
                )
            self._partitions[topic] = count
        return count

    def _next_offset(self, conn: sqlite3.Connection, topic: str, partition: int) -> int:
        cached = self._next_offsets.get((topic, partition))
        if cached is not None:
            return cached
        (next_offset,) = conn.execute(
            "SELECT COALESCE(MAX(offset) + 1, 0) FROM records WHERE topic = ? AND partition = ?",
            (topic, partition),
        ).fetchone()
        return int(next_offset)

    async def _submit(
        self, run: Callable[[sqlite3.Connection], Any], topics: tuple[str, ...]
    ) -> Any:
        if self._closed or self._writer is None:
            raise BusError("the bus is not started or already closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._ops.put(_Op(run, topics, loop, future))
        return await future

    def _write_loop(self) -> None:
        assert self._write_conn is not None
        conn = self._write_conn
        data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        while True:
            first = self._ops.get()
            if not isinstance(first, _Op):
                return  # _CLOSE
            ops = [first]
            closing = False
            while len(ops) < _MAX_OPS_PER_TRANSACTION:
                try:
                    nxt = self._ops.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(nxt, _Op):
                    closing = True
                    break
                ops.append(nxt)
            try:
                data_version = self._run_transaction(conn, ops, data_version)
            except Exception as exc:  # a writer gone would leave every later publish hanging
                log.exception("embedded bus: the writer failed a transaction; carrying on")
                self._written = []
                self._settle_all([(op, None, BusError(f"embedded bus write failed: {exc!r}"))
                                  for op in ops])  # fmt: skip
            if closing:
                return

    def _run_transaction(self, conn: sqlite3.Connection, ops: list[_Op], data_version: int) -> int:
        """Run `ops` in one transaction, then settle each one's future: its result, or its
        error (a failing op is rolled back alone). When the transaction itself fails (the
        disk is full, say), every op fails with the translated error and nothing of them is
        stored; the next transaction simply tries again. Returns the file's data version."""
        results: list[tuple[_Op, Any, BaseException | None]] = []
        self._written = []
        try:
            if conn.in_transaction:  # a rollback that failed last time
                conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            current = conn.execute("PRAGMA data_version").fetchone()[0]
            if current != data_version:
                # Another process wrote since our last transaction: offsets cached here are stale.
                self._next_offsets.clear()
            results = [self._run_op(conn, op) for op in ops]
            conn.execute("COMMIT")
        except Exception as exc:
            self._roll_back(conn)
            failure = _write_failure(exc)
            results = [(op, None, failure) for op in ops]
            self._written = []
        else:
            self.stats.transactions += 1
            self.stats.records_written += len(self._written)
            with contextlib.suppress(sqlite3.Error):  # else the next transaction drops the caches
                data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        self._report(results)
        self._settle_all(results)
        return int(data_version)

    def _run_op(self, conn: sqlite3.Connection, op: _Op) -> tuple[_Op, Any, BaseException | None]:
        """Run one op in a savepoint: one bad op must not fail the others. Raises when
        SQLite rolled the whole transaction back (a full disk does): then every op fails."""
        conn.execute("SAVEPOINT op")
        kept = len(self._written)
        try:
            value = op.run(conn)
            conn.execute("RELEASE op")
        except Exception as exc:
            if not conn.in_transaction:
                raise
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            self._forget_caches()
            del self._written[kept:]
            return op, None, _write_failure(exc) if isinstance(exc, sqlite3.Error) else exc
        return op, value, None

    def _roll_back(self, conn: sqlite3.Connection) -> None:
        """End a failed transaction (if SQLite has not already); never raises."""
        self._forget_caches()
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("embedded bus: rollback failed, retried before the next write: %s", exc)

    def _forget_caches(self) -> None:
        """After a rollback: what the writer cached of the file may not be in it."""
        self._next_offsets.clear()
        self._partitions.clear()

    def _report(self, results: list[tuple[_Op, Any, BaseException | None]]) -> None:
        """Tell the log about writes the file refused, or that it takes them again."""
        refused = [error for _, _, error in results if isinstance(error, BusUnavailable)]
        if refused:
            self._outage.failed(str(refused[-1].__cause__ or refused[-1]), len(refused))
        elif any(error is None for _, _, error in results):
            self._outage.succeeded()

    def _settle_all(self, results: list[tuple[_Op, Any, BaseException | None]]) -> None:
        """Hand the results to the ops' loops: those of the bus's loop in one hop, after
        waking its consumers. A loop already closed has nobody left to tell."""
        topics = {topic for op, _, error in results if error is None for topic in op.topics}
        here = [(op.future, value, error) for op, value, error in results if op.loop is self._loop]
        for op, value, error in results:
            if op.loop is not self._loop:
                with contextlib.suppress(RuntimeError):
                    op.loop.call_soon_threadsafe(_settle, op.future, value, error)
        if self._loop is not None and (topics or here):
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._committed, topics, self._written, here)

    def _committed(
        self,
        topics: set[str],
        written: list[tuple[int, Record]],
        settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
    ) -> None:
        """On the loop, after a transaction: one thread hop for all of it. Consumers are
        woken before the publishers resume, so none of them, fetching in between, reads
        the file for records this process still holds in memory."""
        self._wake(topics, written)
        for future, value, error in settled:
            _settle(future, value, error)

    def _wake(self, topics: set[str], written: list[tuple[int, Record]]) -> None:
        """On the loop, after a commit: remember what was written, wake the consumers."""
        if written:
            if self._tail and written[0][0] != self._tail[-1][0] + 1:
                self._tail.clear()  # another process wrote in between: start afresh
                self._tail_bytes = 0
            self._tail.extend(written)
            self._tail_bytes += sum(len(record.value) for _, record in written)
            if len(self._tail) > 2 * _TAIL_RECORDS or self._tail_bytes > 2 * _TAIL_BYTES:
                self._trim_tail()
        for topic in topics:
            wakeup = self._wakeups.pop(topic, None)
            if wakeup is not None and not wakeup.done():
                wakeup.set_result(None)

    def _trim_tail(self) -> None:
        """Drop the oldest records until at most `_TAIL_RECORDS` and `_TAIL_BYTES` are left."""
        cut, size = 0, self._tail_bytes
        while cut < len(self._tail) and (
            len(self._tail) - cut > _TAIL_RECORDS or size > _TAIL_BYTES
        ):
            size -= len(self._tail[cut][1].value)
            cut += 1
        del self._tail[:cut]
        self._tail_bytes = size

    def wakeup_for(self, topic: str) -> asyncio.Future[None]:
        """A future, shared by every caller, done on the next commit of a record to
        `topic` in this process. Do not await it directly (a cancelled waiter would
        cancel it for everyone): see `_wait_any`."""
        wakeup = self._wakeups.get(topic)
        if wakeup is None:
            wakeup = self._wakeups[topic] = asyncio.get_running_loop().create_future()
        return wakeup

    # reading -----------------------------------------------------------------------------

    def recent(
        self, after_seq: int, topics: tuple[str, ...], limit: int
    ) -> list[tuple[int, Record]] | None:
        """The records of `topics` after `after_seq` from the memory of this process's
        latest writes (contiguous by seq), or None when that memory does not reach back
        to `after_seq + 1` (read the file). An empty list means caught up with them. It
        spares in-process consumers a round trip to SQLite."""
        if not self._tail or after_seq + 1 < self._tail[0][0]:
            return None
        start = after_seq + 1 - self._tail[0][0]
        out = []
        for seq, record in self._tail[start:]:
            if record.topic in topics:
                out.append((seq, record))
                if len(out) >= limit:
                    break
        return out

    async def read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run a read-only query function on the reader thread."""
        if self._closed or self._read_conn is None:
            raise BusError("the bus is not started or already closed")
        conn = self._read_conn
        self.stats.reads += 1
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reader, fn, conn)
        except sqlite3.Error as exc:
            raise BusError(f"embedded bus read failed: {exc}") from exc

    async def reachable(self) -> bool:
        """For `/readyz`: the file answers a read, and writes are not failing (a full disk)."""
        await self.read(lambda conn: conn.execute("SELECT 1").fetchone())
        return not self._outage.failing

    async def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run a write function in the writer's next transaction; returns once durable."""
        return await self._submit(fn, ())

    def consumer(
        self,
        topics: Sequence[str],
        group: str | None = None,
        start: StartAt = "earliest",
        positions: Mapping[tuple[str, int], int] | None = None,
    ) -> EmbeddedConsumer:
        if not topics:
            raise BusError("a consumer needs at least one topic")
        if positions and group is not None:
            raise BusError("positions are for consumers without a group")
        return EmbeddedConsumer(self, tuple(sorted(set(topics))), group, start, positions)

    def _join(self, member: EmbeddedConsumer) -> None:
        assert member.group is not None
        group = self._groups.setdefault(member.group, _Group(member.topics))
        if group.topics != member.topics:
            raise BusError(
                f"group {member.group!r} consumes {list(group.topics)}, not {list(member.topics)}"
            )
        group.members.append(member)
        group.generation += 1

    def _leave(self, member: EmbeddedConsumer) -> None:
        assert member.group is not None
        group = self._groups.get(member.group)
        if group is not None and member in group.members:
            group.members.remove(member)
            group.generation += 1
            if not group.members:
                del self._groups[member.group]

    async def replay(self, topics: Sequence[str]) -> AsyncIterator[Record]:
        wanted = tuple(sorted(set(topics)))
        after_seq = 0
        while True:
            rows = await self.read(
                functools.partial(_page, topics=wanted, after_seq=after_seq, limit=_PAGE)
            )
            for seq, record in rows:
                after_seq = seq
                yield record
            if len(rows) < _PAGE:
                return

    async def partitions_of(self, topic: str) -> int:
        """How many partitions `topic` has (the configured default for a new topic)."""
        row = await self.read(
            lambda c: c.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
        )
        return int(row[0]) if row else self.default_partitions


@dataclass(slots=True)
class _Group:
    topics: tuple[str, ...]
    members: list[EmbeddedConsumer] = field(default_factory=list)
    generation: int = 0


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


def _page(
    conn: sqlite3.Connection, topics: tuple[str, ...], after_seq: int, limit: int
) -> list[tuple[int, Record]]:
    marks = ",".join("?" * len(topics))
    rows = conn.execute(
        f"SELECT seq, topic, partition, offset, key, value, ts_ms FROM records"  # noqa: S608
        f" WHERE seq > ? AND topic IN ({marks}) ORDER BY seq LIMIT ?",
        (after_seq, *topics, limit),
    ).fetchall()
    return [(row[0], Record(row[1], row[2], row[3], row[4], bytes(row[5]), row[6])) for row in rows]


class EmbeddedConsumer:
    """A consumer of the embedded bus (see `Consumer`). Reads by the log's global sequence,
    keeping a position per assigned partition; within a group, partitions are split among
    the members of this process, and reassigned when members join or leave."""

    def __init__(
        self,
        bus: EmbeddedBus,
        topics: tuple[str, ...],
        group: str | None,
        start: StartAt,
        positions: Mapping[tuple[str, int], int] | None = None,
    ) -> None:
        self.bus = bus
        self.topics = topics
        self.group = group
        self.start_at = start
        self.begin_at = dict(positions or {})
        self._positions: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}
        self._assigned: frozenset[tuple[str, int]] | None = None
        self._generation = -1
        self._after_seq: int | None = None
        self._joined = False
        self._closed = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._closed:
            raise BusError("the consumer is closed")
        if self.group is not None and not self._joined:
            self.bus._join(self)
            self._joined = True
        await self._refresh_assignment()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._joined:
            self.bus._leave(self)

    @property
    def assignment(self) -> frozenset[tuple[str, int]]:
        """The (topic, partition) pairs this consumer currently reads."""
        return self._assigned or frozenset()

    async def fetch(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        if self._closed:
            raise BusError("the consumer is closed")
        if self.group is not None and not self._joined:
            await self.start()
        deadline = time.monotonic() + timeout_s
        from_file = False
        while True:
            wakeups = [self.bus.wakeup_for(topic) for topic in self.topics]
            await self._refresh_assignment()
            records = await self._read_available(max_records, from_file)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                return records
            woken = await _wait_any(wakeups, min(remaining, self.bus.poll_interval_s))
            # Woken by a publish here: it is in memory. Else poll the file, where other
            # processes' records appear.
            from_file = not woken

    async def _read_available(self, max_records: int, from_file: bool) -> list[Record]:
        out: list[Record] = []
        page = max(max_records, 100)
        while len(out) < max_records:
            after_seq = self._after_seq or 0
            rows = None
            if not from_file and self._after_seq is not None:
                rows = self.bus.recent(after_seq, self.topics, page)
            if rows is None:
                rows = await self.bus.read(
                    functools.partial(_page, topics=self.topics, after_seq=after_seq, limit=page)
                )
            for seq, record in rows:
                self._after_seq = seq
                where = (record.topic, record.partition)
                position = self._positions.get(where)
                if position is None or record.offset < position:
                    continue  # not ours, or already delivered
                self._positions[where] = record.offset + 1
                out.append(record)
                if len(out) >= max_records:
                    break
            if len(rows) < page:
                break
        return out

    async def _refresh_assignment(self) -> None:
        generation = self.bus._groups[self.group].generation if self.group else 0
        if generation == self._generation:
            return
        self._generation = generation
        everything = []
        for topic in self.topics:
            everything += [(topic, p) for p in range(await self.bus.partitions_of(topic))]
        if self.group is None:
            assigned = frozenset(everything)
        else:
            members = self.bus._groups[self.group].members
            index = members.index(self)
            assigned = frozenset(tp for i, tp in enumerate(everything) if i % len(members) == index)
        fresh = assigned - set(self._positions)
        self._positions = {tp: pos for tp, pos in self._positions.items() if tp in assigned}
        self._assigned = assigned
        if fresh:
            await self._seek(fresh)

    async def _seek(self, fresh: frozenset[tuple[str, int]]) -> None:
        """Set the positions of newly assigned partitions: committed offset, else the
        given position, else `start`."""
        committed: dict[tuple[str, int], int] = {}
        if self.group is not None:
            group = self.group
            rows = await self.bus.read(
                lambda c: c.execute(
                    "SELECT topic, partition, next_offset FROM group_offsets WHERE grp = ?",
                    (group,),
                ).fetchall()
            )
            committed = {(t, p): o for t, p, o in rows}
        ends = await self.bus.read(_partition_ends)
        for tp in fresh:
            if tp in committed:
                self._positions[tp] = committed[tp]
            elif tp in self.begin_at:
                self._positions[tp] = self.begin_at[tp]
            elif self.start_at == "latest":
                self._positions[tp] = ends.get(tp, 0)
            else:
                self._positions[tp] = 0
            self._committed[tp] = committed.get(tp, -1)
        # Rewind the scan to the earliest record any fresh partition still has to deliver.
        targets = {tp: self._positions[tp] for tp in fresh}
        rewind = await self.bus.read(lambda c: _seq_before(c, targets))
        self._after_seq = rewind if self._after_seq is None else min(self._after_seq, rewind)

    async def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        if self.group is None:
            raise BusError("a consumer without a group has nothing to commit")
        if self._closed:
            raise BusError("the consumer is closed")
        wanted = self._positions if offsets is None else offsets
        changed = {
            tp: pos
            for tp, pos in wanted.items()
            if tp in self._positions and self._committed.get(tp) != pos
        }
        if not changed:
            return
        group = self.group

        def store(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO group_offsets (grp, topic, partition, next_offset)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, partition)"
                " DO UPDATE SET next_offset = excluded.next_offset",
                [(group, t, p, pos) for (t, p), pos in changed.items()],
            )

        await self.bus.write(store)
        self._committed.update(changed)

    def position(self, topic: str, partition: int) -> int | None:
        """The next offset this consumer will deliver from the partition, if assigned."""
        return self._positions.get((topic, partition))

    async def positions(self) -> dict[tuple[str, int], int]:
        if self._closed:
            raise BusError("the consumer is closed")
        if self.group is not None and not self._joined:
            await self.start()
        await self._refresh_assignment()
        return {tp: self._positions[tp] for tp in self.assignment}

    async def ends(
        self, partitions: Collection[tuple[str, int]] | None = None
    ) -> dict[tuple[str, int], int]:
        """The file's next offset of each of `partitions` (default: those assigned now).
        Publishes return after their commit, so every acknowledged record is below it."""
        if self._closed:
            raise BusError("the consumer is closed")
        if partitions is None:
            if self.group is not None and not self._joined:
                await self.start()
            await self._refresh_assignment()
            partitions = self.assignment
        wanted = tuple(partitions)
        if any(topic not in self.topics for topic, _ in wanted):
            raise BusError(f"ends of partitions outside this consumer's topics {self.topics}")
        ends = await self.bus.read(lambda c: self._ends_in(c, wanted))
        return dict(zip(wanted, ends, strict=True))

    @staticmethod
    def _ends_in(conn: sqlite3.Connection, partitions: tuple[tuple[str, int], ...]) -> list[int]:
        # One indexed lookup per partition (UNIQUE (topic, partition, offset)), not a scan.
        query = "SELECT COALESCE(MAX(offset) + 1, 0) FROM records WHERE topic = ? AND partition = ?"
        return [int(conn.execute(query, where).fetchone()[0]) for where in partitions]


def _partition_ends(conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
    rows = conn.execute(
        "SELECT topic, partition, MAX(offset) + 1 FROM records GROUP BY topic, partition"
    ).fetchall()
    return {(t, p): end for t, p, end in rows}


def _seq_before(conn: sqlite3.Connection, positions: dict[tuple[str, int], int]) -> int:
    """The largest seq below every record at or after the given partition positions.
    Read in one snapshot: a commit landing between its statements could otherwise put
    new records below the answer (found by none of the per-partition queries, then
    counted in the top), and a consumer starting beside a publisher would skip them."""
    conn.execute("BEGIN")
    try:
        lowest: int | None = None
        for (topic, partition), offset in positions.items():
            row = conn.execute(
                "SELECT MIN(seq) FROM records WHERE topic = ? AND partition = ? AND offset >= ?",
                (topic, partition, offset),
            ).fetchone()
            if row[0] is not None:
                lowest = row[0] if lowest is None else min(lowest, row[0])
        if lowest is None:
            (top,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM records").fetchone()
            return int(top)
        return int(lowest) - 1
    finally:
        conn.execute("COMMIT")  # read only: this ends the snapshot


async def _wait_any(wakeups: list[asyncio.Future[None]], timeout_s: float) -> bool:
    """Wait until one of the shared `wakeups` is done or `timeout_s` passes; True if one
    was. Callbacks and a timer on one private future: no task per wait (consumers wait
    several times per task, and `asyncio.wait` over `Event.wait()` tasks cost each of
    them tens of µs)."""
    if any(wakeup.done() for wakeup in wakeups):
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bool] = loop.create_future()

    def settle(result: bool) -> None:
        if not waiter.done():
            waiter.set_result(result)

    def woken(_: asyncio.Future[None]) -> None:
        settle(True)

    for wakeup in wakeups:
        wakeup.add_done_callback(woken)
    timer = loop.call_later(timeout_s, settle, False)
    try:
        return await waiter
    finally:
        timer.cancel()
        for wakeup in wakeups:
            wakeup.remove_done_callback(woken)
