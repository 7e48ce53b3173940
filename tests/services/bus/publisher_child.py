"""Child process for the durability test: publishes NodeHeartbeat events and prints one
line per publish that returned: `<node_id> <seq> <event_id>`.

Usage: python publisher_child.py BUS_PATH TOTAL KEYS
Each key is owned by one coroutine that publishes its events one after another, so
`seq` (carried in `in_flight`) is the publish order per key; the keys run concurrently,
so the bus commits them in groups.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from events import Envelope, NodeHeartbeat
from services.bus import EmbeddedBus, publish_events


async def publish_key(bus: EmbeddedBus, key: str, count: int) -> None:
    for seq in range(count):
        envelope = Envelope(NodeHeartbeat(node_id=key, in_flight=seq))
        await publish_events(bus, [envelope])
        sys.stdout.write(f"{key} {seq} {envelope.event_id}\n")
        sys.stdout.flush()


async def main(path: Path, total: int, keys: int) -> None:
    async with EmbeddedBus(path) as bus:
        per_key = total // keys
        await asyncio.gather(*(publish_key(bus, f"node-{k}", per_key) for k in range(keys)))
    sys.stdout.write("done\n")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
