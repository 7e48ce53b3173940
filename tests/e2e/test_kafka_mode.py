"""Kafka mode only: the roles in processes of their own ride out a broker restart, and
two scheduler workers with two dispatchers never double-book a slot."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster_env, free_port, sample_workspace, wait_for
from tests.support.kafka import KafkaBroker

CONCURRENCY = 4
WORKSPACE = sample_workspace(name="echo", concurrency=CONCURRENCY)
ACCEPTED = 202
TERMINAL = {"TaskCompleted", "TaskFailed", "TaskCancelled", "TaskExpired"}


def _start(cluster: Cluster) -> str:
    """Two nodes, each with a ready replica of the echo workspace; returns its ID."""
    cluster.start_control_plane()
    cluster.start_node("alpha")
    cluster.start_node("beta")
    created = httpx.post(f"{cluster.url}/v1/workspaces", json=WORKSPACE,
                         headers=cluster.admin(), timeout=30)  # fmt: skip
    assert created.status_code == 201, created.text
    workspace_id = str(created.json()["workspace_id"])

    def ready() -> bool:
        states = [
            d["state"]
            for n in cluster.nodes()
            for d in n["deployments"]
            if d["workspace_id"] == workspace_id
        ]
        return states.count("ready") == 2

    wait_for(ready, 120, "a ready replica on each node")
    return workspace_id


@pytest.fixture
def kafka_cluster(
    tmp_path: Path, kafka_broker: KafkaBroker, request: pytest.FixtureRequest
) -> Iterator[tuple[Cluster, str]]:
    env = cluster_env(
        kafka_broker.bootstrap, NGPU_KAFKA_PUBLISH_TIMEOUT_S="3", NGPU_TASK_TTL_S="600",
        NGPU_RATE_LIMIT_PER_S="100000", NGPU_RATE_LIMIT_BURST="100000",
        NGPU_NODE_LOST_AFTER_S="30",
    )  # fmt: skip
    cluster = Cluster(tmp_path, env, schedulers=getattr(request, "param", 1))
    try:
        yield cluster, _start(cluster)
    finally:
        cluster.stop()


def _submit(http: httpx.Client, n: int) -> tuple[int, str | None]:
    try:
        response = http.post("/user/schedulingTask?paramUrl=echo", json={"data": f"{n}"})
    except httpx.HTTPError:
        return 0, None
    task_id = response.json().get("taskID") if response.status_code == ACCEPTED else None
    return response.status_code, task_id


def _outcome(http: httpx.Client, task_id: str) -> int | None:
    code = int(http.get(f"/user/queryTask?taskID={task_id}").json()["result_code"])
    return None if code == 100 else code


def test_a_broker_restart_loses_no_acknowledged_task(
    kafka_cluster: tuple[Cluster, str], kafka_broker: KafkaBroker
) -> None:
    cluster, workspace_id = kafka_cluster
    headers = {"Authorization": f"Bearer {workspace_id}"}
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=cluster.url, headers=headers, timeout=30) as http:
            n = 0
            while not stop.is_set():
                answers.append(_submit(http, n))
                n += 1

    submitter = threading.Thread(target=stream)
    submitter.start()
    try:
        wait_for(lambda: len(answers) >= 50, 60, "submissions before the outage")
        kafka_broker.stop()
        outage_from = len(answers)
        wait_for(lambda: any(code == 503 for code, _ in answers[outage_from:]), 60, "a 503")
        kafka_broker.restart()
        back_from = len(answers)
        wait_for(
            lambda: sum(code == ACCEPTED for code, _ in answers[back_from:]) >= 50, 120,
            "submissions accepted after the broker returned",
        )  # fmt: skip
    finally:
        stop.set()
        submitter.join(timeout=60)
        if kafka_broker.directory is not None:
            kafka_broker.restart()  # idempotent: the session's other tests need it
    codes = Counter(code for code, _ in answers)
    print(f"answers during the restart test: {dict(codes)}")
    assert set(codes) <= {ACCEPTED, 503}, codes
    assert codes[503] >= 1
    accepted = [task_id for code, task_id in answers if code == ACCEPTED and task_id]
    assert len(accepted) == codes[ACCEPTED]
    with httpx.Client(base_url=cluster.url, headers=headers, timeout=30) as http:
        for task_id in accepted:
            outcome = wait_for(lambda t=task_id: _outcome(http, t), 120, f"task {task_id}")  # type: ignore[misc]
            assert outcome == 200, (task_id, outcome)
    completed = Counter(e["key"] for e in cluster.events() if e["type"] == "TaskCompleted")
    assert all(completed[t] == 1 for t in accepted)


@pytest.mark.parametrize("kafka_cluster", [2], indirect=True)
def test_two_schedulers_and_two_dispatchers_never_double_book(
    kafka_cluster: tuple[Cluster, str],
) -> None:
    cluster, workspace_id = kafka_cluster
    headers = {"Authorization": f"Bearer {workspace_id}"}
    total = 2000
    local = threading.local()

    def submit(n: int) -> tuple[int, str | None]:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=cluster.url, headers=headers, timeout=60)
        return _submit(local.http, n)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(submit, range(total)))
    assert Counter(code for code, _ in answers) == {ACCEPTED: total}
    accepted = {task_id for _, task_id in answers if task_id}
    assert len(accepted) == total

    def all_ended() -> list[dict[str, Any]] | None:
        events = cluster.events()
        ended = {e["key"] for e in events if e["type"] in TERMINAL}
        return events if accepted <= ended else None

    events = wait_for(all_ended, 600, f"all {total} tasks to end")
    mine = [e for e in events if e["key"] in accepted]
    completed = Counter(e["key"] for e in mine if e["type"] == "TaskCompleted")
    assert set(completed) == accepted and set(completed.values()) == {1}
    assert not [e for e in mine if e["type"] in TERMINAL - {"TaskCompleted"}]
    dispatches = Counter((e["key"], e["data"]["attempt"]) for e in mine
                         if e["type"] == "TaskDispatched")  # fmt: skip
    assert set(dispatches.values()) == {1}, "a task was dispatched twice for one attempt"
    assert _most_in_flight_per_node(mine) <= CONCURRENCY


def _most_in_flight_per_node(events: list[dict[str, Any]]) -> int:
    """The largest number of tasks a node held at once, folding dispatches and ends in
    the order of their event times (every process shares this machine's clock)."""
    node_of: dict[str, str] = {}
    in_flight: dict[str, int] = defaultdict(int)
    most = 0
    for event in sorted(events, key=lambda e: e["occurred_at"]):
        if event["type"] == "TaskDispatched":
            node_of[event["key"]] = event["data"]["node_id"]
            in_flight[event["data"]["node_id"]] += 1
            most = max(most, in_flight[event["data"]["node_id"]])
        elif event["type"] in TERMINAL and event["key"] in node_of:
            in_flight[node_of.pop(event["key"])] -= 1
    return most


def test_any_ingress_answers_sync_calls_and_knows_every_task(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    second = free_port()
    cluster = Cluster(tmp_path, cluster_env(kafka_broker.bootstrap), more_ingress_ports=[second])
    try:
        workspace_id = _start(cluster)
        headers = {"Authorization": f"Bearer {workspace_id}"}
        first_url, second_url = cluster.url, f"http://127.0.0.1:{second}"
        for url in (first_url, second_url):
            sync = httpx.post(f"{url}/user/echo", json={"data": url}, headers=headers, timeout=60)
            assert sync.status_code == 200, sync.text
            assert sync.json()["result_code"] == 200 and url in sync.json()["data"]
        first = httpx.Client(base_url=first_url, headers=headers, timeout=30)
        other = httpx.Client(base_url=second_url, headers=headers, timeout=30)
        with first, other:
            code, task_id = _submit(first, 1)
            assert code == ACCEPTED and task_id
            assert wait_for(lambda: _outcome(other, task_id), 60, "the task, on the other") == 200
            detail = other.get(f"/user/getDetailed?taskID={task_id}").json()
            assert detail["taskInfo"]["state"] == 3
            assert task_id in other.get("/user/queryTaskList").json()["taskIds"]
    finally:
        cluster.stop()
