"""Benchmark of `schedule()`: time per placement decision on clusters of 1,000 and 10,000
nodes, printed as a Markdown table.

    .venv/bin/python bench/bench_placement.py [--decisions 5000] [--seed 7]

Each cluster is built the way production builds it: nodes register with raw GPU names
(several types, 1-8 GPUs each) and heartbeat; a few hundred workspaces register with a
Zipf-like spread of `replicas_min`; `plan_replicas` places the replicas (its time is
reported too) and every replica reports ready. Then a steady state runs: tasks arrive
for workspaces in proportion to their capacity, each decision's `TaskDispatched` is
folded back, and random in-flight tasks complete so that about 70% of all slots stay
busy (some decisions find every replica of a workspace busy: those are `Unschedulable`).
Only the `schedule()` call is timed, with `time.perf_counter_ns`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from events.base import Event
from events.deployment import DeploymentReady, DeploymentRequested
from events.node import GpuInfo, NodeHeartbeat, NodeRegistered
from events.task import TaskCompleted, TaskDispatched, TaskSubmitted
from events.workspace import WorkspaceRegistered
from services.scheduler import (
    ClusterState,
    Placement,
    ScheduleRequest,
    SchedulerSettings,
    dispatch_event,
    plan_replicas,
    schedule,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)
GPU_TYPES = (  # raw name as nvidia-smi reports it, share of nodes
    ("NVIDIA GeForce RTX 4090", 0.35),
    ("NVIDIA GeForce RTX 3090", 0.20),
    ("NVIDIA A100-SXM4-80GB", 0.20),
    ("NVIDIA H100 80GB HBM3", 0.15),
    ("NVIDIA L40S", 0.10),
)
GPUS_PER_NODE = ((1, 0.30), (2, 0.30), (4, 0.25), (8, 0.15))
REGIONS = ("eu-west", "eu-east", "us-east", "us-west", "ap-south")
BUSY_SHARE = 0.7


@dataclass
class Cluster:
    state: ClusterState
    nodes: int
    workspaces: list[str]
    weights: list[float]
    replicas: int
    plan_ms: float


def _pick(rng: random.Random, table: tuple[tuple[object, float], ...]) -> object:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def build_cluster(n_nodes: int, n_workspaces: int, rng: random.Random) -> Cluster:
    state = ClusterState()
    _register_nodes(state, n_nodes, rng)
    workspaces = _register_workspaces(state, n_nodes, n_workspaces, rng)
    started = time.perf_counter()
    planned = plan_replicas(state, NOW)
    plan_ms = (time.perf_counter() - started) * 1000
    _make_ready(state, planned)
    weights = [
        len(state.ready_deployment_ids(ws)) * state.workspaces[ws].concurrency for ws in workspaces
    ]
    return Cluster(state, n_nodes, workspaces, weights, len(state.deployments), plan_ms)


def _register_nodes(state: ClusterState, n_nodes: int, rng: random.Random) -> None:
    for i in range(n_nodes):
        gpu = str(_pick(rng, GPU_TYPES))
        count = int(str(_pick(rng, GPUS_PER_NODE)))
        node_id = f"node-{i:05d}"
        state.apply_event(
            NodeRegistered(
                node_id=node_id,
                address=f"0x{i:040x}",
                host=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                region=rng.choice(REGIONS),
                gpus=tuple(GpuInfo(type=gpu, memory_mb=24576) for _ in range(count)),
                runtime="docker",
                token_sha256="0" * 64,
            ),
            NOW - timedelta(seconds=20),
        )
        heartbeat_at = NOW - timedelta(seconds=rng.uniform(0, 5))
        state.apply_event(NodeHeartbeat(node_id=node_id), heartbeat_at)


def _register_workspaces(
    state: ClusterState, n_nodes: int, n_workspaces: int, rng: random.Random
) -> list[str]:
    # Zipf-like demand: a few workspaces hold many replicas, most hold a few; about 1.2
    # replicas per node in total.
    ranks = [1 / (r + 1) ** 0.9 for r in range(n_workspaces)]
    scale = 1.2 * n_nodes / sum(ranks)
    workspaces = []
    for r in range(n_workspaces):
        ws = f"ws-{r:04d}"
        workspaces.append(ws)
        gpu_count = int(str(_pick(rng, ((1, 0.7), (2, 0.2), (4, 0.1)))))
        replicas = max(1, round(ranks[r] * scale / gpu_count))
        state.apply_event(
            WorkspaceRegistered(
                workspace_id=ws,
                name=ws,
                userkey="bench",
                image="registry.example/model:1",
                command=("python", "serve.py"),
                gpu_type=str(_pick(rng, GPU_TYPES)),
                gpu_count=gpu_count,
                ports=(8080,),
                replicas_min=replicas,
                replicas_max=replicas,
                concurrency=rng.choice((1, 2, 4, 8)),
            ),
            NOW - timedelta(seconds=15),
        )
    return workspaces


def _make_ready(state: ClusterState, planned: list[Event]) -> None:
    for event in planned:
        state.apply_event(event, NOW - timedelta(seconds=10))
    for i, event in enumerate(e for e in planned if isinstance(e, DeploymentRequested)):
        ready = DeploymentReady(
            deployment_id=event.deployment_id,
            node_id=event.node_id,
            workspace_id=event.workspace_id,
            host_ports={"8080": 30000 + i % 20000},
        )
        state.apply_event(ready, NOW - timedelta(seconds=5))


class SteadyState:
    """Arrivals, dispatches folded back, and completions keeping ~70% of slots busy."""

    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        self.in_flight: list[TaskDispatched] = []
        self.target = int(BUSY_SHARE * sum(cluster.weights))
        self.count = 0

    def next_request(self) -> ScheduleRequest:
        self.count += 1
        ws = self.rng.choices(self.cluster.workspaces, weights=self.cluster.weights)[0]
        spec = self.cluster.state.workspaces[ws]
        return ScheduleRequest(
            task_id=f"task-{self.count:08d}",
            workspace_id=ws,
            gpu_type=spec.gpu_type,
            gpu_count=spec.gpu_count,
            port=8080,
            now=NOW,
        )

    def settle(self, request: ScheduleRequest, decision: object) -> None:
        state = self.cluster.state
        if isinstance(decision, Placement):
            event = dispatch_event(state, _submitted(request), decision, 1)
            state.apply_event(event, NOW)
            self.in_flight.append(event)
        while len(self.in_flight) > self.target:
            self._complete_one()

    def _complete_one(self) -> None:
        i = self.rng.randrange(len(self.in_flight))
        self.in_flight[i], self.in_flight[-1] = self.in_flight[-1], self.in_flight[i]
        done = self.in_flight.pop()
        took = self.rng.lognormvariate(0, 0.5)
        self.cluster.state.apply_event(
            TaskCompleted(
                task_id=done.task_id,
                workspace_id=done.workspace_id,
                attempt=done.attempt,
                node_id=done.node_id,
                node_ip=done.node_ip,
                node_address=done.node_address,
                status_code=200,
                response_body="{}",
                started_at=NOW - timedelta(seconds=took),
                finished_at=NOW,
                gpu_type="",
                gpu_count=0,
            ),
            NOW,
        )


def _submitted(request: ScheduleRequest) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=request.task_id,
        seq=0,
        workspace_id=request.workspace_id,
        userkey="bench",
        btc_address="",
        mode="async",
        method="POST",
        request_url="/run",
        param_url="/run",
        param_port=request.port,
        user_ip="127.0.0.1",
        request_body='{"prompt": "hello"}',
        gpu_type=request.gpu_type,
        gpu_count=request.gpu_count,
        timeout_s=60.0,
    )


def run(n_nodes: int, n_workspaces: int, decisions: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    cluster = build_cluster(n_nodes, n_workspaces, rng)
    steady = SteadyState(cluster, rng)
    for _ in range(max(2 * steady.target, 2000)):  # warm up: fill slots, build EWMAs
        request = steady.next_request()
        steady.settle(request, schedule(cluster.state, request))
    samples: list[int] = []
    placed = 0
    for _ in range(decisions):
        request = steady.next_request()
        started = time.perf_counter_ns()
        decision = schedule(cluster.state, request)
        samples.append(time.perf_counter_ns() - started)
        placed += isinstance(decision, Placement)
        steady.settle(request, decision)
    samples.sort()
    mean_us = statistics.fmean(samples) / 1000
    return {
        "nodes": n_nodes,
        "workspaces": n_workspaces,
        "replicas": cluster.replicas,
        "max_replicas": max(len(cluster.state.ready_deployment_ids(w)) for w in cluster.workspaces),
        "plan_ms": cluster.plan_ms,
        "median_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99) - 1] / 1000,
        "mean_us": mean_us,
        "per_s": 1e6 / mean_us,
        "placed": 100 * placed / decisions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workspaces", type=int, default=300)
    args = parser.parse_args()
    defaults = SchedulerSettings()
    print(
        f"Python {sys.version.split()[0]}, {args.decisions} decisions per cluster, "
        f"default profile (max_feasible={defaults.max_feasible}), "
        f"{BUSY_SHARE:.0%} of slots busy\n"
    )
    print(
        "| nodes | workspaces | ready replicas | largest workspace | plan_replicas (ms) "
        "| median (µs) | p99 (µs) | mean (µs) | decisions/s | placed |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n_nodes in (1_000, 10_000):
        r = run(n_nodes, args.workspaces, args.decisions, args.seed)
        print(
            f"| {r['nodes']:,} | {r['workspaces']} | {r['replicas']:,} | {r['max_replicas']:,} "
            f"| {r['plan_ms']:,.0f} | {r['median_us']:.1f} | {r['p99_us']:.1f} "
            f"| {r['mean_us']:.1f} | {r['per_s']:,.0f} | {r['placed']:.1f}% |"
        )


if __name__ == "__main__":
    main()
