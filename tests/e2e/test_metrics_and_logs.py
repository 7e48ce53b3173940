"""`/metrics`, the probes and the JSON logs of `ngpu up --demo` in a child process: the
values move with the tasks run, gauges show the cluster as it is, and no log line holds a
Workspace ID."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.logs import workspace_hash
from tests.e2e.cluster import ADMIN_TOKEN, Cluster, cluster_env, free_port, wait_for

BODY = {"btc_address": "bc1pp8vyhh2ma0ntzjwr26xxrn5r0w296yu68wdwle5rrhgtv3a2lgkqtyayus",
        "data": ""}  # fmt: skip
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str, int]]:
    metrics_port = free_port()
    env = cluster_env(
        None, NGPU_LOG_FORMAT="json", NGPU_LOG_LEVEL="debug", NGPU_CHECKPOINT_INTERVAL_S="1",
        NGPU_METRICS_PORT=str(metrics_port),
    )  # fmt: skip
    cluster = Cluster(tmp_path_factory.mktemp("metrics"), env)
    try:
        workspace_id = cluster.start_demo()
        yield cluster, workspace_id, metrics_port
    finally:
        cluster.stop()


def scrape(url: str, token: str | None = ADMIN_TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{url}/metrics", headers=headers, timeout=10)


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_need_the_admin_token(demo: tuple[Cluster, str, int]) -> None:
    cluster, workspace_id, metrics_port = demo
    for url in (cluster.url, f"http://127.0.0.1:{metrics_port}"):
        assert scrape(url, token=None).status_code == 401
        assert scrape(url, token=workspace_id).status_code == 401
        answer = scrape(url)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert httpx.get(f"{url}/healthz", timeout=5).json() == {"ok": True}
        assert httpx.get(f"{url}/readyz", timeout=5).json() == {"ready": True}


def test_values_move_with_the_tasks(demo: tuple[Cluster, str, int]) -> None:
    cluster, workspace_id, _ = demo
    before = samples(scrape(cluster.url).text)
    with httpx.Client(base_url=cluster.url, timeout=60,
                      headers={"Authorization": f"Bearer {workspace_id}"}) as http:  # fmt: skip
        for _ in range(3):
            assert http.post("/user/img2img", json=BODY).json()["result_code"] == 200
        after = samples(scrape(cluster.url).text)
        route = {"route": "/user/{path:path}", "method": "POST"}  # the sync route
        requests = "ngpu_http_requests_total"
        assert (
            value(after, requests, **route, result_code="200")
            - value(before, requests, **route, result_code="200")
            == 3
        )
        latency = "ngpu_http_request_duration_seconds_count"
        assert value(after, latency, **route) - value(before, latency, **route) == 3
        assert (
            value(after, "ngpu_dispatch_attempts_total")
            - value(before, "ngpu_dispatch_attempts_total")
            == 3
        )
        calls = "ngpu_container_call_duration_seconds_count"
        assert (
            value(after, calls, outcome="completed") - value(before, calls, outcome="completed")
            == 3
        )
        completed = value(after, "ngpu_tasks", state="completed")
        assert completed - value(before, "ngpu_tasks", state="completed") == 3
        assert value(after, "ngpu_nodes", state="healthy") == 1
        assert value(after, "ngpu_replicas", state="ready") == 1
        for group in ("dispatcher", "webhooks"):
            assert ("ngpu_consumer_lag", frozenset({("group", group)})) in after

        # Tasks that wait: the queue's gauges name the workspace by its hash.
        label = workspace_hash(workspace_id)
        for _ in range(3):
            queued = http.post("/user/schedulingTask?paramUrl=sleep?ms=1500", json=BODY)
            assert queued.json()["result_code"] == 100, queued.text  # queued
        waiting = wait_for(
            lambda: (s := samples(scrape(cluster.url).text))
            and value(s, "ngpu_queue_depth", workspace=label) >= 1
            and s,
            30, "a queued task",
        )  # fmt: skip
        assert value(waiting, "ngpu_queue_delay_seconds", workspace=label) >= 0
        assert value(waiting, "ngpu_tasks", state="queued") >= 1
    ages = wait_for(
        lambda: (s := samples(scrape(cluster.url).text))
        and ("ngpu_checkpoint_age_seconds", frozenset({("fold", "directory")})) in s
        and s,
        30, "a checkpoint",
    )  # fmt: skip
    assert value(ages, "ngpu_checkpoint_age_seconds", fold="directory") >= 0
    assert workspace_id not in scrape(cluster.url).text


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def test_log_lines_carry_the_task_never_the_workspace_id(demo: tuple[Cluster, str, int]) -> None:
    cluster, workspace_id, _ = demo
    with httpx.Client(base_url=cluster.url, timeout=60,
                      headers={"Authorization": f"Bearer {workspace_id}"}) as http:  # fmt: skip
        answer = http.post("/user/img2img", json=BODY)
        assert answer.json()["result_code"] == 200
    log = cluster.data_dir / "up.log"
    label = workspace_hash(workspace_id)

    def access_line() -> dict[str, Any] | None:
        for line in _log_lines(log):
            if line.get("logger") == "ngpu.access" and line.get("route") == "/user/{path:path}":
                return line
        return None

    access = wait_for(access_line, 10, "an access line")
    assert access["workspace"] == label
    assert access["task_id"]
    assert access["status"] == 200 and access["latency_ms"] > 0
    assert {"timestamp", "level", "event"} <= set(access)
    task_id = access["task_id"]
    dispatched = wait_for(
        lambda: [line for line in _log_lines(log)
                 if line.get("task_id") == task_id and line.get("node")],
        10, "the dispatcher's line of the task",
    )  # fmt: skip
    assert dispatched[0]["workspace"] == label
    assert dispatched[0]["attempt"] == 1
    for line in _log_lines(log):
        assert workspace_id not in json.dumps(line), line
        assert ADMIN_TOKEN not in json.dumps(line), line
