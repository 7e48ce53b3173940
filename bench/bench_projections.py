"""Projection benchmark: writer throughput (events/s in batches) and read latency of
task_detail, task_status, task_list and usage over a store of many tasks.

Each task is Submitted -> Dispatched -> Completed (3 events), spread over 20 workspaces,
50 nodes, 3 GPU types and 30 days. Runs on the in-process engine (chdb) in a temporary
directory unless --dsn names a server database URL.

Run: .venv/bin/python bench/bench_projections.py [--tasks 100000] [--batch 1000]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from events import Envelope, TaskCompleted, TaskDispatched, TaskSubmitted
from projections import ProjectionWriter, connect, task_detail, task_list, task_status, usage
from projections.writer import table_rows

START = datetime(2024, 4, 1, tzinfo=UTC)
DAYS = 30
WORKSPACES = [f"ws-{i:02d}" for i in range(20)]
NODES = [f"node-{i:02d}" for i in range(50)]
GPUS = ["A100", "H100", "RTX4090"]
BODY = '{"prompt": "' + "x" * 200 + '"}'


def task_events(i: int, rng: random.Random) -> list[Envelope]:
    task = f"{i:08d}"
    ws, node, gpu = rng.choice(WORKSPACES), rng.choice(NODES), rng.choice(GPUS)
    t0 = START + timedelta(seconds=rng.uniform(0, DAYS * 86_400))
    sub = TaskSubmitted(
        task_id=task, seq=i, workspace_id=ws, userkey="uk", btc_address="", mode="async",
        method="schedulingTask", request_url="/user/schedulingTask?paramUrl=run",
        param_url="run", param_port=8080, user_ip="10.1.2.3", request_body=BODY,
        gpu_type=gpu, gpu_count=1, timeout_s=60.0,
    )  # fmt: skip
    dispatch = TaskDispatched(task, ws, 1, node, "10.0.0.1", "0xabc", "dep", 31000)
    began = t0 + timedelta(seconds=0.1)
    done = TaskCompleted(
        task_id=task, workspace_id=ws, attempt=1, node_id=node, node_ip="10.0.0.1",
        node_address="0xabc", status_code=200, response_body=BODY, started_at=began,
        finished_at=began + timedelta(seconds=rng.uniform(0.2, 20)), gpu_type=gpu, gpu_count=1,
    )  # fmt: skip
    return [
        Envelope(sub, occurred_at=t0),
        Envelope(dispatch, occurred_at=t0 + timedelta(seconds=0.05)),
        Envelope(done, occurred_at=done.finished_at),
    ]


def latency_ms(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), statistics.quantiles(samples, n=100)[94]


def run(dsn: str, tasks: int, batch: int, queries: int) -> None:
    rng = random.Random(42)
    history = [e for i in range(tasks) for e in task_events(i, rng)]
    rng.shuffle(history)  # as the bus interleaves tasks
    opened = time.perf_counter()
    client = connect(dsn)
    open_s = time.perf_counter() - opened
    writer = ProjectionWriter(client, "bench")
    writer.reset()

    start = time.perf_counter()
    for first in range(0, len(history), batch):
        table_rows(history[first : first + batch])
    pure_rate = len(history) / (time.perf_counter() - start)
    start = time.perf_counter()
    for first in range(0, len(history), batch):
        writer.write(history[first : first + batch])
    write_rate = len(history) / (time.perf_counter() - start)
    start = time.perf_counter()
    writer.write(history[:batch])
    replay_ms = (time.perf_counter() - start) * 1000
    big = ProjectionWriter(client, "bench_big_batches")
    big.reset()
    sample = history[: min(len(history), 100_000)]
    start = time.perf_counter()
    for first in range(0, len(sample), 10 * batch):
        big.write(sample[first : first + 10 * batch])
    big_rate = len(sample) / (time.perf_counter() - start)
    big.reset()

    ids = iter([f"{rng.randrange(tasks):08d}" for _ in range(3 * queries + 3)])
    day = (START + timedelta(days=10), START + timedelta(days=11))
    everything = (START, START + timedelta(days=DAYS + 1))
    cursor = task_list(client, "bench", "ws-00", *everything, limit=100)[-1]
    reads: list[tuple[str, Callable[[], Any], int]] = [
        ("task_detail (random task)", lambda: task_detail(client, "bench", next(ids)), queries),
        ("task_status (random task)", lambda: task_status(client, "bench", next(ids)), queries),
        (
            "task_list, one workspace, one day",
            functools.partial(task_list, client, "bench", "ws-00", *day),
            queries,
        ),
        (
            "task_list, one workspace, all 30 days",
            functools.partial(task_list, client, "bench", "ws-00", *everything),
            queries,
        ),
        (
            "task_list, page of 100 after a cursor",
            functools.partial(
                task_list, client, "bench", "ws-00", *everything, limit=100, after=cursor
            ),
            queries,
        ),
    ]
    for group in ("workspace", "node", "gpu_type", "day"):
        measure = functools.partial(usage, client, "bench", group, *everything)
        reads.append((f"usage by {group}, 30 days", measure, max(20, queries // 10)))
    rows = [(name, latency_ms(fn, n)) for name, fn, n in reads]
    per_ws = len(task_list(client, "bench", "ws-00", *everything))
    per_day = len(task_list(client, "bench", "ws-00", *day))

    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, store {dsn.split(':')[0]} "
        f"(ClickHouse {client.server_version}); {tasks:,} tasks = {len(history):,} events"
    )
    print()
    print("| measure | result |")
    print("|---|---|")
    print(f"| open the client | {open_s * 1000:,.0f} ms |")
    print(f"| rows_for + grouping only (pure), batches of {batch:,} | {pure_rate:,.0f} events/s |")
    print(f"| writer.write, batches of {batch:,} | {write_rate:,.0f} events/s |")
    print(
        f"| writer.write, batches of {10 * batch:,} ({len(sample):,} events) "
        f"| {big_rate:,.0f} events/s |"
    )
    print(f"| writer.write of {batch:,} already-written events (replay) | {replay_ms:,.0f} ms |")
    print(f"| tasks listed: one workspace, all days / one day | {per_ws:,} / {per_day:,} |")
    for name, (p50, p95) in rows:
        print(f"| {name}, p50 / p95 | {p50:.1f} / {p95:.1f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dsn", help="a ClickHouse URL; default: chdb in a temporary dir")
    args = parser.parse_args()
    if args.dsn:
        run(args.dsn, args.tasks, args.batch, args.queries)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"chdb://{tmp}/clickhouse", args.tasks, args.batch, args.queries)
