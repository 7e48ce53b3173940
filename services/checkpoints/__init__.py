"""Checkpoints of folded state with the log positions they cover: a start loads the
newest one and replays only the log after it."""

from services.checkpoints.snapshot import (
    Checkpoint,
    CheckpointUnreadable,
    Positions,
    decode,
    encode,
    fingerprint,
)
from services.checkpoints.store import (
    BusCheckpoints,
    CheckpointStore,
    EmbeddedCheckpoints,
    checkpoint_store,
)

__all__ = [
    "BusCheckpoints",
    "Checkpoint",
    "CheckpointStore",
    "CheckpointUnreadable",
    "EmbeddedCheckpoints",
    "Positions",
    "checkpoint_store",
    "decode",
    "encode",
    "fingerprint",
]
