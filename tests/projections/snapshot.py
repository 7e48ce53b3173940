"""Every answer of the read side over a set of tasks, for comparing databases."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client

from projections import (
    TABLES,
    GroupBy,
    event_count,
    task_count,
    task_detail,
    task_list,
    task_status,
    usage,
)

from .builders import EVER

GROUPS: tuple[GroupBy, ...] = ("workspace", "node", "gpu_type", "day")


def snapshot(client: Client, database: str, workspaces: list[str], tasks: list[str]) -> Any:
    details = {}
    for task in tasks:
        detail = task_detail(client, database, task)
        details[task] = (detail, task_status(client, database, task))
    return {
        "lists": {ws: task_list(client, database, ws, *EVER) for ws in workspaces},
        "pages": {ws: task_list(client, database, ws, *EVER, limit=2) for ws in workspaces},
        "details": details,
        "usage": {group: usage(client, database, group, *EVER) for group in GROUPS},
        "events": event_count(client, database),
        "tasks": task_count(client, database),
    }


def merge_everything(client: Client, database: str) -> None:
    """Force the merges that collapse duplicates (answers must not depend on them)."""
    for table in TABLES:
        client.command(f"OPTIMIZE TABLE {database}.{table.name} FINAL")
