"""`queryTaskList` lists every task `queryTask` reports on the same ingress, at once, in
submission order, with exact cursor paging, while the projections lag the log (a 30 s
projector linger here). On Kafka, tasks are submitted through two ingress processes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.cluster import Cluster, cluster_env, free_port, sample_workspace, wait_for


@pytest.fixture
def lagging(tmp_path: Path, kafka_bootstrap: str | None) -> Iterator[tuple[Cluster, str]]:
    env = cluster_env(kafka_bootstrap, NGPU_PROJECTOR_LINGER_S="30")
    cluster = Cluster(tmp_path, env)
    if cluster.on_kafka:
        cluster.more_ingress_ports = [free_port()]
    try:
        cluster.start_control_plane()
        cluster.start_node("alpha", gpu="RTX4090:2")
        created = httpx.post(f"{cluster.url}/v1/workspaces", json=sample_workspace(),
                             headers=cluster.admin(), timeout=30)  # fmt: skip
        workspace_id = created.json()["workspace_id"]
        wait_for(lambda: cluster._ready(workspace_id), 90, "a replica ready")
        yield cluster, workspace_id
    finally:
        cluster.stop()


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_every_task_query_task_reports_is_listed_at_once_in_order(
    lagging: tuple[Cluster, str],
) -> None:
    cluster, workspace_id = lagging
    urls = [cluster.url, *(f"http://127.0.0.1:{p}" for p in cluster.more_ingress_ports)]
    auth = {"Authorization": f"Bearer {workspace_id}"}
    with httpx.Client(headers=auth, timeout=60) as http:

        def submit(n: int) -> str:
            answer = http.post(f"{urls[n % len(urls)]}/user/schedulingTask?paramUrl=img2img",
                               json={"data": {"n": n}})  # fmt: skip
            assert answer.status_code == 202, answer.text
            return str(answer.json()["taskID"])

        def listed(**query: object) -> dict[str, object]:
            today = {"startTime": _today(), "endTime": _today()}
            answer = http.get(f"{cluster.url}/user/queryTaskList", params={**today, **query})
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        def reported(task_id: str) -> bool:
            answer = http.get(f"{cluster.url}/user/queryTask", params={"taskID": task_id})
            return bool(answer.status_code in (200, 202))

        # The first task of a fresh system: listed as soon as it is reported, and ended.
        first = submit(0)
        assert reported(first)
        assert listed()["taskIds"] == [first]
        wait_for(lambda: http.get(f"{cluster.url}/user/queryTask&taskID={first}")
                 .json()["result_code"] == 200, 60, "the first task to end")  # fmt: skip
        assert listed()["taskIds"] == [first]

        # Part of a burst projected (getDetailed flushes the projector beside this ingress),
        # the rest known only from the log: one list, one order, exact pages.
        burst = [submit(n) for n in range(1, 41)]
        for task_id in burst:
            wait_for(lambda t=task_id: reported(t), 30, f"{task_id} reported")  # type: ignore[misc]
        detailed = http.get(f"{cluster.url}/user/getDetailed", params={"taskID": burst[-1]})
        assert detailed.status_code == 200, detailed.text
        later = [submit(n) for n in range(41, 61)]
        for task_id in later:
            wait_for(lambda t=task_id: reported(t), 30, f"{task_id} reported")  # type: ignore[misc]
        everything = [first, *burst, *later]
        whole = listed()
        assert whole["taskIds"] == everything
        assert whole["result_size"] == len(everything)

        pages: list[str] = []
        cursor: object = None
        while True:
            page = listed(limit=7, **({"cursor": cursor} if cursor else {}))
            pages += page["taskIds"]  # type: ignore[arg-type]
            cursor = page.get("cursor")
            if cursor is None:
                break
        assert pages == everything

        # A range that ends before today lists none of them.
        none = http.get(f"{cluster.url}/user/queryTaskList",
                        params={"endTime": "2024-01-01"}).json()  # fmt: skip
        assert none["taskIds"] == []
