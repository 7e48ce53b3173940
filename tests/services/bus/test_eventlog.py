"""Decoding records: in-process consumers of the embedded bus share one decode per record."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from events import WorkspaceDeleted
from events.topics import WORKSPACES
from services.bus import EmbeddedBus, decode_record, publish_events


async def test_consumers_in_one_process_share_each_records_envelope(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.sqlite3") as bus:
        first, second = bus.consumer([WORKSPACES]), bus.consumer([WORKSPACES])
        await first.start()
        await second.start()
        # Both wait for the commit (a fetch that runs before the commit's wake-up reads
        # the file instead, and gets records of its own).
        fetches = [asyncio.create_task(c.fetch(10, timeout_s=5)) for c in (first, second)]
        await asyncio.sleep(0.05)
        await publish_events(bus, [WorkspaceDeleted(workspace_id=f"w{i}") for i in range(5)])
        got_first, got_second = await asyncio.gather(*fetches)
        assert len(got_first) == len(got_second) == 5
        for a, b in zip(got_first, got_second, strict=True):
            assert a is b  # the embedded bus hands both the same record...
            assert decode_record(a) is decode_record(b)  # ...so it is decoded once
            assert decode_record(a).event.workspace_id == a.key
        await first.close()
        await second.close()


async def test_a_copy_and_a_large_record_are_decoded_afresh(tmp_path: Path) -> None:
    async with EmbeddedBus(tmp_path / "bus.sqlite3") as bus:
        small, large = await publish_events(
            bus, [WorkspaceDeleted(workspace_id="w1"), WorkspaceDeleted(workspace_id="w" * 20_000)]
        )
    copy = replace(small)
    assert copy is not small and decode_record(copy) == decode_record(small)
    assert decode_record(copy) is not decode_record(small)
    assert decode_record(large) == decode_record(large)
    assert decode_record(large) is not decode_record(large)  # over 16 KiB: not kept
