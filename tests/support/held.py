"""A reader's catch-up under the test's control: `HeldBus` is the embedded log whose
consumers fetch nothing until `released` is set, and at most `batch` records at a time
(as a Kafka consumer far behind hands out whatever its last fetch response held)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from services.bus import EmbeddedBus, Record
from services.bus.embedded import EmbeddedConsumer
from services.bus.protocol import StartAt


class HeldConsumer(EmbeddedConsumer):
    async def fetch(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        assert isinstance(self.bus, HeldBus)
        await self.bus.released.wait()
        return await super().fetch(min(max_records, self.bus.batch), timeout_s)


class HeldBus(EmbeddedBus):
    def __init__(self, path: Path, *, batch: int = 1_000_000, released: bool = False) -> None:
        super().__init__(path, partitions=4, poll_interval_s=0.05)
        self.batch = batch
        self.released = asyncio.Event()
        if released:
            self.released.set()

    def consumer(
        self,
        topics: Sequence[str],
        group: str | None = None,
        start: StartAt = "earliest",
        positions: Mapping[tuple[str, int], int] | None = None,
    ) -> EmbeddedConsumer:
        return HeldConsumer(self, tuple(sorted(set(topics))), group, start, positions)
