"""Checkpointing a fold of the log: where it left off, and when to save again."""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.bus import BusError, Record
from services.checkpoints.snapshot import Checkpoint
from services.checkpoints.store import CheckpointStore

log = logging.getLogger(__name__)
_live: weakref.WeakSet[FoldCheckpoints] = weakref.WeakSet()


def live_checkpoints() -> list[FoldCheckpoints]:
    """The folds' checkpoints of this process still in use (for `checkpoint age` metrics)."""
    return list(_live)


class FoldCheckpoints:
    """The checkpoints of one fold (`name`, written by code of `version`). The fold calls
    `resume()` once before reading, `folded(record)` for every record it has applied, and
    `save_due(state)` at points where its state is consistent with what it folded (and
    with whatever it published of its own); a save happens at most every `interval_s`,
    only when something was folded since the last one. A failed save is logged and
    retried at the next due point: the fold itself never stops for it."""

    def __init__(
        self, store: CheckpointStore, name: str, version: str, interval_s: float = 30.0
    ) -> None:
        self.store = store
        self.name = name
        self.version = version
        self.interval_s = interval_s
        self.positions: dict[tuple[str, int], int] = {}
        self.saves = 0
        self.records = 0
        """Records folded by this process (the tail after the checkpoint it resumed from)."""
        self._dirty = False
        self._last_save = time.monotonic()
        self.written_at: datetime | None = None
        """When the newest checkpoint this fold saved or resumed from was written."""
        _live.add(self)

    async def resume(self) -> Any | None:
        """The state of the newest usable checkpoint (its positions become the fold's),
        or None: fold from the beginning."""
        try:
            checkpoint = await self.store.load(self.name, self.version)
        except BusError as exc:
            log.warning("checkpoint %s could not be loaded; replaying the log: %s", self.name, exc)
            return None
        if checkpoint is None:
            return None
        self.positions = dict(checkpoint.positions)
        self.written_at = checkpoint.written_at
        log.info(
            "%s: resuming from the checkpoint of %s (%d partitions)",
            self.name, checkpoint.written_at.isoformat(), len(self.positions),
        )  # fmt: skip
        return checkpoint.state

    def folded(self, record: Record) -> None:
        self.positions[(record.topic, record.partition)] = record.offset + 1
        self.records += 1
        self._dirty = True

    async def save_due(self, state: Callable[[], Any]) -> bool:
        """Save `state()` if a save is due; whether one was made."""
        if not self._dirty or time.monotonic() - self._last_save < self.interval_s:
            return False
        return await self.save(state())

    async def save(self, state: Any) -> bool:
        """Save `state` now (as of the positions folded so far); whether it was stored."""
        self._last_save = time.monotonic()
        checkpoint = Checkpoint(self.name, self.version, dict(self.positions), state)
        try:
            await self.store.save(checkpoint)
        except BusError as exc:
            log.warning("checkpoint %s was not saved (next in %.0fs): %s",
                        self.name, self.interval_s, exc)  # fmt: skip
            return False
        self._dirty = False
        self.written_at = checkpoint.written_at
        self.saves += 1
        return True
