"""Project a cluster's log twice from its beginning, into two fresh databases of a new
chdb engine, as a projector starting from offset 0 would, and print both answers as
JSON: `[first, second]`. The log is the one the environment's `NGPU_*` settings name
(the embedded file of DATA_DIR, or Kafka); a young cluster's log still holds everything
(the long-term record is ClickHouse's archive: see test_archive.py).

Usage: python replay_child.py DATA_DIR CHDB_DIR WORKSPACE_ID
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events import topics
from projections import ProjectionWriter, connect, task_detail, task_list, usage
from services.bus import Bus, bus_from_settings, decode_record
from services.settings import load_settings

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


async def project_the_log(bus: Bus, writer: ProjectionWriter) -> None:
    writer.reset()
    writer.write([decode_record(record) async for record in bus.replay(topics.HISTORY_TOPICS)])


async def main(data_dir: Path, chdb_dir: Path, workspace_id: str) -> None:
    client = connect(f"chdb:///{chdb_dir}")
    results = []
    bus = bus_from_settings(load_settings(data_dir=data_dir))
    await bus.start()
    try:
        for database in ("replay_a", "replay_b"):
            await project_the_log(bus, ProjectionWriter(client, database))
            results.append(answers(client, database, workspace_id))
    finally:
        await bus.close()
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
