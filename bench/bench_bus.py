"""Embedded bus benchmark: durable publish rate (one at a time, batched, concurrent) and
publish-to-consume latency at a fixed rate, plus the CPU an idle consumer uses.

Run: .venv/bin/python bench/bench_bus.py [--seconds 10] [--rate 500]
Prints a Markdown table (recorded in bench/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import struct
import tempfile
import time
from pathlib import Path

from services.bus import EmbeddedBus, Outgoing

PAYLOAD = b"x" * 300  # about the size of an encoded task event


async def sequential(bus: EmbeddedBus, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await bus.publish("bench", f"k{i % 64}", PAYLOAD)
    return n / (time.perf_counter() - start)


async def batched(bus: EmbeddedBus, n: int, size: int) -> float:
    start = time.perf_counter()
    for first in range(0, n, size):
        await bus.publish_many(
            [Outgoing("bench", f"k{i % 64}", PAYLOAD) for i in range(first, first + size)]
        )
    return n / (time.perf_counter() - start)


async def concurrent(bus: EmbeddedBus, n: int, writers: int) -> float:
    async def writer(w: int) -> None:
        for _ in range(n // writers):
            await bus.publish("bench", f"k{w}", PAYLOAD)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return n / (time.perf_counter() - start)


async def latency(bus: EmbeddedBus, rate: int, seconds: float) -> list[float]:
    """Publish at `rate`/s one at a time; a consumer measures publish-start to delivery."""
    delays: list[float] = []
    total = int(rate * seconds)
    async with bus.consumer(["lat"], start="latest") as consumer:
        await consumer.fetch(1, timeout_s=0.01)

        async def consume() -> None:
            while len(delays) < total:
                for record in await consumer.fetch(1000, timeout_s=1.0):
                    (sent,) = struct.unpack("<q", record.value[:8])
                    delays.append((time.perf_counter_ns() - sent) / 1e6)

        reader = asyncio.create_task(consume())
        start = time.perf_counter()
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            await bus.publish(
                "lat", f"k{i % 64}", struct.pack("<q", time.perf_counter_ns()) + PAYLOAD
            )
        await asyncio.wait_for(reader, 30)
    return delays


async def idle_cpu(bus: EmbeddedBus, seconds: float) -> float:
    async with bus.consumer(["idle"]) as consumer:
        before = resource.getrusage(resource.RUSAGE_SELF)
        await consumer.fetch(10, timeout_s=seconds)
        after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return 100 * used / seconds


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1]


async def main(seconds: float, rate: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with EmbeddedBus(Path(tmp) / "bus.sqlite3") as bus:
            one = await sequential(bus, 3000)
            b100 = await batched(bus, 50_000, 100)
            b1000 = await batched(bus, 50_000, 1000)
            conc = await concurrent(bus, 50_000, 100)
            delays = await latency(bus, rate, seconds)
            cpu = await idle_cpu(bus, 5.0)
            tx = bus.stats.transactions
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {__import__('sqlite3').sqlite_version}"
    )
    print()
    print("| measure | result |")
    print("|---|---|")
    print(f"| durable publish, one at a time (sequential awaits) | {one:,.0f} /s |")
    print(f"| durable publish_many, batches of 100 | {b100:,.0f} /s |")
    print(f"| durable publish_many, batches of 1,000 | {b1000:,.0f} /s |")
    print(f"| durable publish, 100 concurrent publishers (group commit) | {conc:,.0f} /s |")
    print(
        f"| publish-to-consume latency at {rate}/s for {seconds:.0f} s, p50 | "
        f"{statistics.median(delays):.2f} ms |"
    )
    print(f"| publish-to-consume latency at {rate}/s, p99 | {pct(delays, 99):.2f} ms |")
    print(f"| publish-to-consume latency at {rate}/s, max | {max(delays):.2f} ms |")
    print(f"| idle consumer CPU over 5 s | {cpu:.2f} % of a core |")
    print(f"| transactions used for all of the above | {tx:,} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rate))
