"""An outage of writes is not an outage of the process. With the embedded log's disk full
(`ngpu up`) or the Kafka broker away (every role in one `ngpu serve`): submissions are
answered 503 and leave nothing in the log, reads are served, the process and its roles
keep running; once writes are possible again the same process accepts and completes
tasks, and every task accepted before is completed."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster_env, sample_workspace, wait_for
from tests.support.kafka import KafkaBroker

WORKSPACE = sample_workspace(name="echo", replicas={"min": 1, "max": 1})
PADDING = "x" * 8000  # a submission needs pages of its own: a full file cannot take it
OUTAGE_S = 6.0  # past NGPU_NODE_LOST_AFTER_S: the scheduler tries (and fails) to publish
ACCEPTED, UNAVAILABLE = 202, 503


def _start(cluster: Cluster) -> str:
    """The control plane, a node, and the echo workspace with a ready replica on it."""
    cluster.start_control_plane()
    cluster.start_node("alpha")
    created = httpx.post(f"{cluster.url}/v1/workspaces", json=WORKSPACE,
                         headers=cluster.admin(), timeout=30)  # fmt: skip
    assert created.status_code == 201, created.text
    workspace_id = str(created.json()["workspace_id"])

    def ready() -> bool:
        return any(
            d["state"] == "ready" and d["workspace_id"] == workspace_id
            for n in cluster.nodes()
            for d in n["deployments"]
        )

    wait_for(ready, 120, "a ready replica")
    return workspace_id


def _submit(http: httpx.Client, marker: str) -> httpx.Response:
    body = {"data": f"{marker}:{PADDING}"}
    return http.post("/user/schedulingTask?paramUrl=echo", json=body)


def _accepted(http: httpx.Client, marker: str) -> str:
    response = _submit(http, marker)
    assert response.status_code == ACCEPTED, response.text
    return str(response.json()["taskID"])


def _outcome(http: httpx.Client, task_id: str) -> int | None:
    code = int(http.get(f"/user/queryTask?taskID={task_id}").json()["result_code"])
    return None if code == 100 else code


def _completes(http: httpx.Client, task_id: str) -> None:
    outcome = wait_for(lambda: _outcome(http, task_id), 120, f"task {task_id} to end")
    assert outcome == 200, (task_id, outcome)


def _projected(http: httpx.Client, task_id: str) -> bool:
    detail = http.get(f"/user/getDetailed?taskID={task_id}")
    assert detail.status_code == 200, detail.text
    return bool(detail.json()["taskInfo"]["state"] == 3)


def _reads_are_served(cluster: Cluster, http: httpx.Client, done: str) -> None:
    assert _outcome(http, done) == 200
    assert _projected(http, done)
    listed = http.get("/user/queryTaskList")
    assert listed.status_code == 200, listed.text
    assert done in listed.json()["taskIds"]
    assert cluster.node_named("alpha") is not None  # GET /v1/nodes


def _refused(http: httpx.Client, markers: list[str]) -> None:
    """Every submission (async and sync, concurrently) is answered 503."""

    def one(marker: str) -> httpx.Response:
        if marker.endswith("sync"):
            return http.post("/user/echo", json={"data": f"{marker}:{PADDING}"})
        return _submit(http, marker)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one, markers))
    for answer in answers:
        assert answer.status_code == UNAVAILABLE, answer.text
        assert answer.json()["result_code"] == UNAVAILABLE
        assert "taskID" not in answer.json()


def _ride_out(
    cluster: Cluster,
    workspace_id: str,
    cut: Callable[[], None],
    restore: Callable[[], None],
    log: Path,
) -> None:
    control_plane = cluster.processes[0]
    headers = {"Authorization": f"Bearer {workspace_id}"}
    with httpx.Client(base_url=cluster.url, headers=headers, timeout=60) as http:
        done = _accepted(http, "done")
        _completes(http, done)
        wait_for(lambda: _projected(http, done), 60, "the task's projection")
        before = [_accepted(http, f"before-{n}") for n in range(10)]  # some still running
        cut()
        began = time.monotonic()
        refused = [f"refused-{n}" for n in range(8)] + ["refused-sync"]
        _refused(http, refused)
        _reads_are_served(cluster, http, done)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - began)))
        _refused(http, ["refused-late"])
        _reads_are_served(cluster, http, done)
        assert control_plane.poll() is None, "the control plane exited"
        restore()
        outage_s = time.monotonic() - began

        def accepted_again() -> str | None:
            response = _submit(http, "after")
            assert response.status_code in (ACCEPTED, UNAVAILABLE), response.text
            return str(response.json()["taskID"]) if response.status_code == ACCEPTED else None

        after = wait_for(accepted_again, 60, "a submission accepted again")
        for task_id in [*before, after]:
            _completes(http, task_id)
    assert control_plane.poll() is None, "the control plane exited"
    submitted = [e for e in cluster.events() if e["type"] == "TaskSubmitted"]
    assert {done, *before, after} <= {e["key"] for e in submitted}
    bodies = [e["data"]["request_body"] for e in submitted]
    assert not [b for b in bodies if b.startswith("refused-")], "a refused submission was stored"
    text = log.read_text(errors="replace")
    said = re.findall(r"writes (?:are|still) failing", text)
    # Once per 10 s and bus (on Kafka the scheduler has a bus of its own), not once a write.
    assert 1 <= len(said) <= 2 * (2 + outage_s / 10), (said, outage_s)
    ours = re.findall(r"^\S+ \S+ (?:WARNING|ERROR) services\.\S+", text, re.MULTILINE)
    assert len(ours) <= 5 + outage_s, ours  # not a line per request, heartbeat or retry
    # Said once no write failed for a while (heartbeats keep writing).
    wait_for(lambda: "writes succeed again" in log.read_text(errors="replace"), 30, "the end")


def test_a_full_disk_under_ngpu_up_is_an_outage_of_writes_only(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, cluster_env(), command=("-m", "tests.e2e.full_disk_child"))
    log = tmp_path / "up.log"

    def lever(signum: int, said: str) -> Callable[[], None]:
        def pull() -> None:
            os.kill(cluster.processes[0].pid, signum)
            wait_for(lambda: said in log.read_text(errors="replace"), 30, said)

        return pull

    try:
        workspace_id = _start(cluster)
        _ride_out(cluster, workspace_id, lever(signal.SIGUSR1, "disk lever: full"),
                  lever(signal.SIGUSR2, "disk lever: room"), log)  # fmt: skip
        text = log.read_text(errors="replace")
        assert "database or disk is full" in text
        assert "scheduler stopped:" in text  # it was refused a decision, and ran again
    finally:
        cluster.stop()


def test_a_broker_away_is_an_outage_of_writes_only(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    if kafka_broker.directory is None:
        pytest.skip("an external broker cannot be stopped")
    env = cluster_env(kafka_broker.bootstrap, NGPU_KAFKA_PUBLISH_TIMEOUT_S="3")
    cluster = Cluster(tmp_path, env, one_process=True)
    try:
        workspace_id = _start(cluster)
        _ride_out(cluster, workspace_id, kafka_broker.stop, kafka_broker.restart,
                  tmp_path / "ingress.log")  # fmt: skip
    finally:
        cluster.stop()
        kafka_broker.restart()  # idempotent: the session's other tests need it
