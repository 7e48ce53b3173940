"""Gauges computed at scrape time from what the process already holds (nothing is kept
up to date on a hot path for them): tasks by state and nodes and replicas (an ingress's
task view and directory), queue depth and delay per workspace (a scheduler's state),
consumer and projector lag, checkpoint age. A family whose source is not in this process
is left out. Workspaces are labelled by `services.logs.workspace_hash`, never by id."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.checkpoints.fold import live_checkpoints
from services.logs import workspace_hash
from services.metrics import lag, sources


class StateCollector(Collector):
    """Registered once per process (`prometheus_client.REGISTRY`)."""

    def collect(self) -> Iterator[Metric]:
        yield from _ingress()
        yield from _scheduler()
        yield from _lag()
        yield from _checkpoints()


def _ingress() -> Iterator[Metric]:
    source = sources.ingress()
    follower = source.directory() if source else None
    if source is None or follower is None:
        return
    tasks = source.tasks() if source.tasks else None
    if tasks is not None:
        gauge = GaugeMetricFamily(
            "ngpu_tasks",
            "Tasks by state, among those the ingress's task view holds (those seen since "
            "its start, the 200,000 last changed).",
            labels=["state"],
        )
        counts = tasks.view.counts_by_phase()
        for phase in ("queued", "running", "completed", "failed", "cancelled", "expired"):
            gauge.add_metric([phase], counts.get(phase, 0))
        yield gauge
    now = datetime.now(UTC)
    nodes: Counter[str] = Counter()
    replicas: Counter[str] = Counter()
    for node in follower.directory.nodes.values():
        if node.revoked:
            nodes["revoked"] += 1
        elif node.lost:
            nodes["lost"] += 1
        elif node.draining:
            nodes["draining"] += 1
        elif node.healthy(now, source.lost_after_s):
            nodes["healthy"] += 1
        else:
            nodes["silent"] += 1
        for deployment in node.deployments.values():
            replicas[deployment.state] += 1
    gauge = GaugeMetricFamily(
        "ngpu_nodes",
        "Registered nodes: healthy (heartbeat fresh), silent (not heard from lately, not yet "
        "lost), lost, draining, revoked.",
        labels=["state"],
    )
    for state in ("healthy", "silent", "lost", "draining", "revoked"):
        gauge.add_metric([state], nodes[state])
    yield gauge
    gauge = GaugeMetricFamily("ngpu_replicas", "Replicas (deployments) by state.", labels=["state"])
    for state in ("requested", "starting", "ready", "draining", "failed", "stopped"):
        gauge.add_metric([state], replicas[state])
    yield gauge


def _scheduler() -> Iterator[Metric]:
    runner = sources.scheduler()
    if runner is None:
        return
    queue = runner.state.queue
    depth = GaugeMetricFamily(
        "ngpu_queue_depth", "Tasks waiting for a node, per workspace.", labels=["workspace"]
    )
    delay = GaugeMetricFamily(
        "ngpu_queue_delay_seconds",
        "How long the longest-waiting task of each workspace has waited.",
        labels=["workspace"],
    )
    now = time.time()
    for workspace_id in queue.waiting_workspaces():
        label = [workspace_hash(workspace_id)]
        depth.add_metric(label, queue.waiting_count(workspace_id))
        oldest = queue.oldest_submitted_s(workspace_id)
        delay.add_metric(label, max(0.0, now - oldest) if oldest is not None else 0.0)
    yield depth
    yield delay


def _lag() -> Iterator[Metric]:
    gauge = GaugeMetricFamily(
        "ngpu_consumer_lag",
        "Records not yet read by this process's consumers, per consumer group (as of the scrape).",
        labels=["group"],
    )
    for group, behind in sorted(lag.lags.items()):
        gauge.add_metric([group], behind)
    yield gauge
    projector = sources.projector()
    if projector is None:
        return
    behind = lag.lags.get(projector.group, 0)
    last = projector.stats.last_event_at
    seconds = 0.0
    if behind and last is not None:
        seconds = max(0.0, (datetime.now(UTC) - last).total_seconds())
    yield GaugeMetricFamily(
        "ngpu_projector_lag_seconds",
        "How far the projections trail the log: the age of the newest event written while "
        "records are left to write, else 0.",
        value=seconds,
    )
    yield GaugeMetricFamily(
        "ngpu_projector_lag_records", "Records the projector has not read yet.", value=behind
    )


def _checkpoints() -> Iterator[Metric]:
    gauge = GaugeMetricFamily(
        "ngpu_checkpoint_age_seconds",
        "Age of the newest checkpoint of each fold this process keeps (saved or loaded).",
        labels=["fold"],
    )
    now = datetime.now(UTC)
    newest: dict[str, datetime] = {}
    for fold in live_checkpoints():
        if fold.written_at is not None:
            newest[fold.name] = max(newest.get(fold.name, fold.written_at), fold.written_at)
    for name, at in sorted(newest.items()):
        gauge.add_metric([name], max(0.0, (now - at).total_seconds()))
    yield gauge
