"""`queryTaskList` with read-your-writes: the projections' list merged with the tasks the
ingress's task view already knows, so a task `queryTask` reports is listed at once, not
one projector linger later, and the projector is not made to insert per request."""

from __future__ import annotations

from datetime import datetime

from projections import ListEntry
from services.ingress.errors import BadRequest
from services.ingress.store import TaskStore
from services.ingress.taskview import TaskView


async def list_task_ids(
    view: TaskView,
    store: TaskStore,
    workspace_id: str,
    start: datetime,
    end: datetime,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> list[str]:
    """The workspace's task ids submitted in [start, end), in list order (submission
    time, then task id), at most `limit`, strictly after the task `cursor` (the last id
    of the previous page, which must be a task of this list: else `BadRequest`).

    Exact under paging: the first `limit` entries after the cursor of the union are
    among the first `limit` of each source."""
    after: ListEntry | None = None
    if cursor is not None:
        at = view.listed_at(workspace_id, cursor)
        if at is None:
            at = await store.list_position(workspace_id, start, end, cursor)
        if at is None or not start <= at < end:
            raise BadRequest(f"cursor {cursor!r} is not a task of this list", field="cursor")
        after = (at, cursor)
    stored = await store.list_entries(workspace_id, start, end, limit, after)
    recent = view.listed(workspace_id, start, end, after=after, limit=limit)
    places = dict((task_id, at) for at, task_id in recent)
    places.update((task_id, at) for at, task_id in stored)  # the projection's time wins
    merged = sorted((at, task_id) for task_id, at in places.items())
    return [task_id for _, task_id in merged[:limit]]
