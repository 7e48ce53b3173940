"""The base of every event: plain data plus three class-level facts (version, key, topic)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events. Subclasses are frozen, slotted dataclasses with past-tense names.

    `VERSION` is the schema version written in the envelope; `KEY_FIELD` names the field
    whose value is the bus key (order is kept per key); `TOPIC` is the topic it goes to.
    """

    VERSION: ClassVar[int] = 1
    KEY_FIELD: ClassVar[str]
    TOPIC: ClassVar[str]

    @property
    def key(self) -> str:
        """The bus key of this event: the value of its `KEY_FIELD`."""
        value = getattr(self, self.KEY_FIELD)
        assert isinstance(value, str)
        return value


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC: the only kind of time events carry."""
    return datetime.now(UTC)
