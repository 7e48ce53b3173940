"""The `ngpu` command with a hand on the embedded log's disk: in `ngpu up`, SIGUSR1 fills
it and SIGUSR2 makes room again (`tests.support.disk`), each confirmed by a line "disk
lever: full" / "disk lever: room" on stdout. Everything else runs as shipped.

Usage: python -m tests.e2e.full_disk_child up ARGS... (from the repository's root)
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import services.roles
from services.bus import EmbeddedBus, bus_from_settings
from services.cli import main
from services.settings import Settings
from tests.support.disk import fill_disk, make_room

_bus_from_settings = bus_from_settings
_levers: set[asyncio.Task[None]] = set()


async def _pull(bus: EmbeddedBus, full: bool) -> None:
    await (fill_disk(bus) if full else make_room(bus))
    print(f"disk lever: {'full' if full else 'room'}", flush=True)


def _bus_with_a_lever(settings: Settings) -> Any:
    bus = _bus_from_settings(settings)
    assert isinstance(bus, EmbeddedBus), "the disk lever is for the embedded log"
    loop = asyncio.get_running_loop()
    for signum, full in ((signal.SIGUSR1, True), (signal.SIGUSR2, False)):

        def pull(full: bool = full) -> None:
            task = loop.create_task(_pull(bus, full))
            _levers.add(task)
            task.add_done_callback(_levers.discard)

        loop.add_signal_handler(signum, pull)
    return bus


if __name__ == "__main__":
    services.roles.bus_from_settings = _bus_with_a_lever  # type: ignore[attr-defined]
    sys.argv[0] = "ngpu"
    main()
