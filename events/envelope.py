"""The envelope every event travels in: identity, time, key and schema version."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime

from events.base import Event, utc_now


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event with its metadata. `event_id` is unique per event (consumers that must be
    idempotent dedupe on it): 128 random bits in hex. They come from `random` (seeded from
    the OS at start and in every forked child), not `os.urandom`: an id is no secret, and
    `os.urandom` releases the GIL, which a busy worker thread may then keep for the 5 ms
    switch interval. `occurred_at` is timezone-aware UTC."""

    event: Event
    event_id: str = field(default_factory=lambda: f"{random.getrandbits(128):032x}")
    occurred_at: datetime = field(default_factory=utc_now)

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
