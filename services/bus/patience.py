"""Consumer calls that wait out, or shrug off, a bus that is away: shared by the roles
that track their own positions (the dispatcher, the webhooks role)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.bus.errors import BusError, BusUnavailable
from services.bus.protocol import Consumer

log = logging.getLogger(__name__)

ENDS_RETRY_S = 1.0


async def end_of(consumer: Consumer, where: tuple[str, int]) -> int:
    """The end of partition `where` as of now; waits out a bus that cannot tell."""
    while True:
        try:
            return (await consumer.ends([where])).get(where, 0)
        except BusUnavailable as exc:
            log.warning("the end of %s:%d is unknown, retrying: %s", *where, exc)
            await asyncio.sleep(ENDS_RETRY_S)


async def commit_quietly(consumer: Consumer, offsets: dict[tuple[str, int], int]) -> None:
    """Store `offsets`; a refusal (a rebalance, the bus away) is left to the next commit."""
    with contextlib.suppress(BusError):
        await consumer.commit(offsets)
