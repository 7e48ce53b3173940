"""Rebuild the projections from a bus file twice, into two fresh databases of a new chdb
engine, and print both answers as JSON: `[first, second]`.

Usage: python replay_child.py BUS_PATH CHDB_DIR WORKSPACE_ID
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from projections import ProjectionWriter, connect, rebuild, task_detail, task_list, usage
from services.bus import EmbeddedBus

START, END = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def answers(client: Any, database: str, workspace_id: str) -> dict[str, Any]:
    tasks = task_list(client, database, workspace_id, START, END)
    details = {}
    for task_id in tasks:
        detail = task_detail(client, database, task_id)
        details[task_id] = detail.task_info() if detail else None
    rollups = {
        group: [[r.key, r.tasks, r.gpu_seconds] for r in usage(client, database, group, START, END)]
        for group in ("workspace", "node", "gpu_type", "day")
    }
    return {"tasks": tasks, "details": details, "usage": rollups}


async def main(bus_path: Path, chdb_dir: Path, workspace_id: str) -> None:
    client = connect(f"chdb:///{chdb_dir}")
    results = []
    async with EmbeddedBus(bus_path) as bus:
        for database in ("replay_a", "replay_b"):
            await rebuild(bus, ProjectionWriter(client, database))
            results.append(answers(client, database, workspace_id))
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
