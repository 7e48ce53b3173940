"""What the ingress routes share: settings, the bus, the directory follower, credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from events import Envelope, Event
from services.bus import Bus, BusError, Record, publish_events
from services.ingress.errors import ServiceUnavailable
from services.ingress.follower import DirectoryFollower
from services.settings import Settings


@dataclass(slots=True)
class IngressContext:
    settings: Settings
    bus: Bus
    follower: DirectoryFollower
    admin_token: str
    join_token: str
    registration_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def publish(
        self, events: Iterable[Envelope | Event], *, visible: bool = True
    ) -> list[Record]:
        """Publish durably; with `visible`, return only once the directory shows them, so
        the caller's next read sees its own write. A bus failure becomes a 503."""
        try:
            records = await publish_events(self.bus, events)
        except BusError as exc:
            raise ServiceUnavailable(f"the event bus is unavailable: {exc}") from exc
        if visible:
            await self.follower.wait_for(records)
        return records
