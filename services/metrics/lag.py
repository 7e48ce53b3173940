"""Consumer lag: the records each consumer group of this process has not read yet (the
partition ends minus its positions, over the partitions its consumers hold here). Asking
the bus is a round trip, so it is done before each scrape (`refresh`), not per record."""

from __future__ import annotations

import asyncio
import contextlib

from services.bus import Consumer
from services.metrics import sources

_TIMEOUT_S = 2.0

lags: dict[str, int] = {}
"""Group -> records behind, as of the last refresh."""


async def refresh() -> None:
    """Ask every living consumer of this process how far behind it is (each within 2 s;
    one that cannot answer, e.g. closed or cut off from the bus, is left out)."""
    found: dict[str, int] = {}
    for consumer, group in list(sources.consumers.items()):
        behind = await _behind(consumer)
        if behind is not None:
            found[group] = found.get(group, 0) + behind
    lags.clear()
    lags.update(found)


async def _behind(consumer: Consumer) -> int | None:
    with contextlib.suppress(Exception):  # a closed consumer, a bus away: nothing to say
        async with asyncio.timeout(_TIMEOUT_S):
            positions = await consumer.positions()
            if not positions:
                return 0
            ends = await consumer.ends(list(positions))
            return sum(max(0, ends.get(where, 0) - at) for where, at in positions.items())
    return None
