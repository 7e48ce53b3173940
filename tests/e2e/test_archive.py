"""ClickHouse's archive is the long-term record: with the gateway stopped,
`ngpu projections rebuild` recreates the task tables from it alone (the bus is not read),
and the gateway, started again, answers `getDetailed` exactly as before."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.cluster import Cluster, cluster_env, wait_for


def _detail(http: httpx.Client, task_id: str) -> dict[str, Any] | None:
    """The task's `taskInfo` once it is completed in the projections."""
    response = http.get(f"/user/getDetailed?taskID={task_id}")
    if not response.is_success or response.json()["taskInfo"]["state"] != 3:
        return None
    info: dict[str, Any] = response.json()["taskInfo"]
    return info


def test_the_task_tables_rebuild_from_the_archive(
    tmp_path: Path, kafka_bootstrap: str | None
) -> None:
    cluster = Cluster(tmp_path, cluster_env(kafka_bootstrap))
    try:
        workspace_id = cluster.start_demo()
        headers = {"Authorization": f"Bearer {workspace_id}"}
        with httpx.Client(base_url=cluster.url, headers=headers, timeout=60) as http:
            task_ids = [
                http.post("/user/schedulingTask?paramUrl=echo", json={"data": f"hi {n}"}).json()[
                    "taskID"
                ]
                for n in range(3)
            ]
            before = {
                task_id: wait_for(lambda t=task_id: _detail(http, t), 60, "the task's detail")  # type: ignore[misc]
                for task_id in task_ids
            }
        cluster.stop()

        rebuilt = subprocess.run(
            [sys.executable, "-m", "services.cli", "projections", "rebuild",
             "--data-dir", str(cluster.data_dir)],
            env=cluster.env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        found = re.search(r"from (\d+) archived task events", rebuilt)
        assert found is not None and int(found.group(1)) >= 3 * len(task_ids), rebuilt

        cluster.start_control_plane()
        with httpx.Client(base_url=cluster.url, headers=headers, timeout=60) as http:
            assert {task_id: _detail(http, task_id) for task_id in task_ids} == before
    finally:
        cluster.stop()
