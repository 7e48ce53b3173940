"""The archive: ClickHouse's raw `events` table, the long-term record of every history
event. The bus keeps only a retention window; the derived tables (submissions,
dispatches, requeues, outcomes) are rebuilt from the archive alone
(`rebuild_from_archive`), and the bodies of events archived before bodies had a column of
their own are moved into it (`split_archived_bodies`), so that they too can age out.

Reading walks the table in its sort order (topic, key, event_id), a page at a time,
resuming after the last key read: each page is one range of the primary key, so memory
and the work per page stay bounded however large the archive grows. Copies of one event
(replays not merged away yet) are read once, the current layout first.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterator, Mapping, Sequence
from string import Template
from typing import Any

from clickhouse_connect.driver.client import Client

from events import EVENT_TYPES, Envelope, EventDecodeError, decode
from projections.apply import FACT_TYPES, body_field, join_body, raw_row
from projections.schema import DERIVED, EVENTS, ROLLUPS, body_retention, drop_schema
from projections.store import identifier, run_command, run_insert, run_query
from projections.writer import ProjectionWriter

log = logging.getLogger(__name__)

FACT_TOPICS: tuple[str, ...] = tuple(sorted({cls.TOPIC for cls in FACT_TYPES}))
"""The topics whose events yield the derived tables' rows."""
BODY_TOPICS: tuple[str, ...] = tuple(
    sorted({cls.TOPIC for cls in EVENT_TYPES.values() if body_field(cls)})
)
"""The topics whose events may carry a body."""

_FACT_TYPE_NAMES = sorted(cls.__name__ for cls in FACT_TYPES)
_PAGE = Template(
    "SELECT topic, key, event_id, payload, body FROM $events"
    " WHERE topic IN {topics:Array(String)} AND $only"
    " AND (topic > {topic:String} OR topic = {topic:String}"
    "  AND (key > {key:String} OR key = {key:String} AND event_id > {event_id:String}))"
    " ORDER BY topic, key, event_id, layout DESC LIMIT 1 BY topic, key, event_id"
    " LIMIT {limit:UInt64}"
)
_HISTORY = Template(
    "SELECT topic, key, event_id, payload, '' FROM $events"
    " WHERE topic = {topic:String} AND key = {key:String}"
    " ORDER BY occurred_at, event_id, layout DESC LIMIT 1 BY event_id"
)
_FACTS_ONLY = "type IN {types:Array(String)}"
_OLD_LAYOUT_ONLY = "layout = 0"
_DELETE_MOVED = Template(
    "DELETE FROM $events WHERE topic IN {topics:Array(String)} AND layout = 0"
    " AND event_id IN {ids:Array(String)}"
)
_RAW_TUPLE = operator.attrgetter(*EVENTS.columns)


def archived_envelope(payload: str, body: str) -> Envelope:
    """The event an archived row holds: its `payload` decoded, with `body` put back.
    Raises `EventDecodeError`."""
    return join_body(decode(payload), body)


def archived_history(client: Client, database: str, topic: str, key: str) -> list[Envelope]:
    """The archived events of one entity (`key` on `topic`: a task's are its id on the
    tasks topic), each once, by (occurred_at, event_id): the archive keeps no log
    offsets, so time order stands for log order. One range of the sort key. The `body`
    column is not read (bodies can be large): the events come without their bodies, but
    for those archived in the old layout (`layout` 0, the body inside `payload`).
    Undecodable rows are logged and skipped."""
    sql = _HISTORY.substitute(events=f"{identifier(database)}.{EVENTS.name}")
    return _decoded(run_query(client, sql, {"topic": topic, "key": key}))


def rebuild_from_archive(client: Client, database: str, *, batch_size: int = 10_000) -> int:
    """Drop the derived tables of `database` (the usage ledger and rollup included) and
    fill them again from its archive alone,
    `batch_size` events at a time. The archive is left as it is, and the recreated tables
    get the body retention it has. Returns how many archived events that yield derived
    rows (task events) were read, each once (undecodable rows are logged and skipped).
    Blocking. Run it while no projector writes to `database`: an event archived meanwhile
    may miss its derived rows."""
    writer = ProjectionWriter(
        client, database, body_retention_days=body_retention(client, database)
    )
    drop_schema(client, writer.database, (*DERIVED, *ROLLUPS))
    writer.ensure_schema()
    read = 0
    pages = _pages(
        client, writer.database, FACT_TOPICS, _FACTS_ONLY, {"types": _FACT_TYPE_NAMES}, batch_size
    )
    for rows in pages:
        envelopes = _decoded(rows)
        if envelopes:
            writer.write(envelopes, archive=False)
        read += len(envelopes)
    return read


def split_archived_bodies(client: Client, database: str, *, batch_size: int = 10_000) -> int:
    """Archive again, in the current layout, every event archived before bodies had a
    column of their own (`layout` 0: the body inside `payload`, out of reach of the body
    TTL), and delete its old row. Returns how many events were moved. Idempotent (an
    interrupted run is finished by the next), and cheap when there is nothing to move: it
    reads the `layout` column of the topics whose events carry bodies. Blocking."""
    db = identifier(database)
    delete = _DELETE_MOVED.substitute(events=f"{db}.{EVENTS.name}")
    moved = 0
    for rows in _pages(client, db, BODY_TOPICS, _OLD_LAYOUT_ONLY, {}, batch_size):
        envelopes = _decoded(rows)
        if envelopes:
            moved_rows = [_RAW_TUPLE(raw_row(envelope)) for envelope in envelopes]
            run_insert(client, db, EVENTS.name, moved_rows, EVENTS.columns)
            ids = [envelope.event_id for envelope in envelopes]
            run_command(client, delete, {"topics": list(BODY_TOPICS), "ids": ids})
        moved += len(envelopes)
    if moved:
        log.info("moved the bodies of %d archived events into their own column", moved)
    return moved


def _pages(
    client: Client,
    db: str,
    topics: Sequence[str],
    only: str,
    parameters: Mapping[str, Any],
    batch_size: int,
) -> Iterator[Sequence[Sequence[Any]]]:
    """Pages of (topic, key, event_id, payload, body) of the archived events of `topics`
    that match the condition `only`, in key order, one row per event."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sql = _PAGE.substitute(events=f"{db}.{EVENTS.name}", only=only)
    after = ("", "", "")
    while True:
        bound = {"topic": after[0], "key": after[1], "event_id": after[2]}
        rows = run_query(
            client, sql, {**parameters, **bound, "topics": list(topics), "limit": batch_size}
        )
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        after = (rows[-1][0], rows[-1][1], rows[-1][2])


def _decoded(rows: Sequence[Sequence[Any]]) -> list[Envelope]:
    envelopes = []
    for topic, key, event_id, payload, body in rows:
        try:
            envelopes.append(archived_envelope(payload, body))
        except EventDecodeError as exc:
            log.warning(
                "skipping undecodable archived event %s (%s/%s): %s", event_id, topic, key, exc
            )
    return envelopes
