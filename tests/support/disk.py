"""A full disk under the embedded log, without root: `fill_disk` caps the file at the
pages it has (SQLite's `max_page_count`, a setting of the writer's connection, set through
the writer like any write) and takes what room is left in its last page with ballast
records of a topic nobody reads. Every write that adds a record then fails with
"database or disk is full", as on a full disk; `make_room` lifts the cap."""

from __future__ import annotations

import sqlite3

from services.bus import BusError, EmbeddedBus

BALLAST = "test.disk-ballast"
"""The topic of the ballast records (they stay in the log)."""


async def fill_disk(bus: EmbeddedBus) -> None:
    def cap(conn: sqlite3.Connection) -> None:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await bus.write(cap)
    size = 4096
    while size:  # records are appended to the table's last page: fill it up
        try:
            await bus.publish(BALLAST, "ballast", b"\0" * size)
        except BusError:  # no room for this size (the bus's error, old or new)
            size //= 2


async def make_room(bus: EmbeddedBus) -> None:
    await bus.write(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
