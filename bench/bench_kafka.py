"""Gateway benchmark on Kafka: a real broker (compose/kafka/broker), and the roles as
separate processes (`ngpu serve`: ingress+projector on chdb, scheduler, two dispatchers),
one node agent running the sample app with one replica of concurrency 64.

- sync pass-through added latency: as bench_gateway.py (1 KB, sequential, interleaved
  with calls straight to the container and through the node's proxy);
- async submissions/s: wrk when installed, else httpx clients in this process;
- submit-to-completed latency at a steady offered rate (open loop, default 200 tasks/s
  for 20 s, no-op `/echo`): `TaskCompleted.occurred_at - TaskSubmitted.occurred_at`
  of every task, read back from the log.

Run: .venv/bin/python bench/bench_kafka.py [--sync 1000] [--rate 200] [--seconds 20]
     [--clients 32] [--wrk-seconds 10]
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_gateway import (  # noqa: E402
    Replica,
    async_rate,
    find_replica,
    load_arguments,
    pct,
    print_report,
    sync_latency,
    sync_rows,
    wrk_rate,
)

from tests.e2e.cluster import ADMIN_TOKEN, Cluster, cluster_env, sample_workspace, wait_for  # noqa: E402
from tests.support.kafka import KafkaBroker  # noqa: E402

HOPS = ("TaskSubmitted", "TaskDispatched", "TaskCompleted")
WORKSPACE = sample_workspace(name="bench-echo", replicas={"min": 1, "max": 1}, concurrency=64)


def start_cluster(cluster: Cluster) -> tuple[str, Replica]:
    """Start the cluster; its workspace ID and its replica once that is ready."""
    cluster.start_control_plane()
    cluster.start_node("bench")
    created = httpx.post(f"{cluster.url}/v1/workspaces", json=WORKSPACE, headers=cluster.admin())
    created.raise_for_status()
    workspace_id = str(created.json()["workspace_id"])

    def ready() -> bool:
        return any(
            d["workspace_id"] == workspace_id and d["state"] == "ready"
            for node in cluster.nodes()
            for d in node["deployments"]
        )

    wait_for(ready, 120, "the replica to be ready")
    return workspace_id, find_replica(cluster.nodes(), workspace_id, cluster.agents["bench"].pid)


async def steady_load(base: str, workspace_id: str, rate: int, seconds: int) -> list[str]:
    """Submit `rate` tasks a second for `seconds` (open loop); returns the taskIDs."""
    auth = {"Authorization": f"Bearer {workspace_id}"}
    url = f"{base}/user/schedulingTask?paramUrl=echo"
    ids: list[str] = []
    async with httpx.AsyncClient(headers=auth, trust_env=False, timeout=60) as http:

        async def one() -> None:
            response = await http.post(url, json={"data": '{"n": 1}'})
            ids.append(response.json()["taskID"])

        pending = []
        started = time.perf_counter()
        for n in range(rate * seconds):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            pending.append(asyncio.create_task(one()))
        await asyncio.gather(*pending)
    return ids


def completion_latency(cluster: Cluster, ids: list[str]) -> dict[str, float]:
    wanted = set(ids)

    def ended() -> dict[str, dict[str, datetime]] | None:
        times: dict[str, dict[str, datetime]] = {}
        for event in cluster.events():
            if event["key"] in wanted and event["type"] in HOPS:
                at = datetime.fromisoformat(event["occurred_at"])
                times.setdefault(event["key"], {})[event["type"]] = at
        done = [t for t in times.values() if "TaskCompleted" in t]
        return times if len(done) == len(wanted) else None

    times = wait_for(ended, 300, "every task of the steady load to complete")
    out = {}
    for name, (start, end) in {"total": (HOPS[0], HOPS[2]), "scheduled": HOPS[:2],
                               "ran": HOPS[1:]}.items():  # fmt: skip
        ms = [
            (t[end] - t[start]).total_seconds() * 1000
            for t in times.values()
            if start in t and end in t
        ]
        out[f"{name}_p50"], out[f"{name}_p99"] = statistics.median(ms), pct(ms, 99)
    return out


def main() -> None:
    parser = load_arguments(rate=200, seconds=20)
    parser.description = __doc__
    args = parser.parse_args()
    load = os.getloadavg()[0]
    call_key = secrets.token_hex(32)
    with tempfile.TemporaryDirectory() as tmp:
        broker = KafkaBroker.start_in(Path(tmp) / "kafka")
        env = cluster_env(
            broker.bootstrap, NGPU_RATE_LIMIT_PER_S="0", NGPU_LOG_LEVEL="warning",
            NGPU_HEARTBEAT_INTERVAL_S="1", NGPU_NODE_LOST_AFTER_S="10",
            NGPU_NODE_CALL_KEY=call_key,
        )  # fmt: skip
        (Path(tmp) / "cluster").mkdir()
        cluster = Cluster(Path(tmp) / "cluster", env)
        try:
            workspace_id, replica = start_cluster(cluster)
            base = cluster.url
            sync = sync_latency(base, workspace_id, replica, call_key.encode(), args.sync)
            ids = asyncio.run(steady_load(base, workspace_id, args.rate, args.seconds))
            latency = completion_latency(cluster, ids)
            if shutil.which("wrk"):
                client = "wrk"
                rate = wrk_rate(base, workspace_id, args.wrk_seconds, args.clients, ADMIN_TOKEN)
            else:
                client = "httpx"
                rate = asyncio.run(async_rate(base, workspace_id, args.async_tasks, args.clients))
        finally:
            cluster.stop()
            broker.stop()
    rows = [
        *sync_rows(sync),
        (f"submit-to-completed at {args.rate}/s for {args.seconds} s, p50 / p99",
         f"{latency['total_p50']:.1f} / {latency['total_p99']:.1f} ms"),
        ("... of which submitted to dispatched, p50 / p99",
         f"{latency['scheduled_p50']:.1f} / {latency['scheduled_p99']:.1f} ms"),
        ("... and dispatched to completed, p50 / p99",
         f"{latency['ran_p50']:.1f} / {latency['ran_p99']:.1f} ms"),
        (f"async submissions ({rate['submitted']:,.0f} from {args.clients} {client} clients)",
         f"{rate['rate']:,.0f} /s"),
        (f"until all {rate['submitted']:,.0f} completed", f"{rate['drain_s']:.1f} s"),
    ]  # fmt: skip
    print_report(rows, ", Kafka broker from compose/kafka", load_before=load)


if __name__ == "__main__":
    main()
