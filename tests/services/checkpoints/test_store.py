"""Checkpoint stores on each bus: the newest checkpoint of a name comes back; one of
another version, or none at all, is None."""

from __future__ import annotations

from services.bus import Bus
from services.checkpoints import Checkpoint, checkpoint_store
from tests.services.bus.conftest import bus  # noqa: F401 - the fixture: each bus in turn


async def test_the_newest_checkpoint_of_a_name_is_loaded(bus: Bus) -> None:  # noqa: F811
    store = checkpoint_store(bus)
    assert await store.load("fold", "v1") is None
    await store.save(Checkpoint("fold", "v1", {("t", 0): 3}, {"n": 1}))
    await store.save(Checkpoint("other", "v1", {("t", 0): 9}, {"n": 9}))
    await store.save(Checkpoint("fold", "v1", {("t", 0): 5, ("t", 1): 2}, {"n": 2}))
    loaded = await store.load("fold", "v1")
    assert loaded is not None
    assert (loaded.positions, loaded.state) == ({("t", 0): 5, ("t", 1): 2}, {"n": 2})
    assert await store.load("fold", "v2") is None
