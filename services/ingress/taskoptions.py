"""A caller's own deadlines and priority for one task, and how long a sync caller waits.

Both submission routes read three optional query parameters beside the contract's
(`timeout_s`, `ttl_s`, `priority`), and the sync route a `Prefer: wait=N` header (RFC
7240). None of them reaches the container: the sync route forwards its path alone (no
query), and `schedulingTask`'s container path is `paramUrl`'s value. Each is checked before
anything is published; a bad value is a 400 naming it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.ingress.directory import WorkspaceView
from services.ingress.errors import BadRequest
from services.settings import Settings

MAX_PRIORITY = 9
PREFER_WAIT_MAX_S = 86_400
_NUMBER = re.compile(r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
_PRIORITY = re.compile(r"^[0-9]{1,3}$")
_SECONDS = re.compile(r"^[0-9]{1,6}$")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """What one task may take: `timeout_s` for each attempt's container call, `ttl_s`
    waiting for capacity, and its `priority` in the queue (higher first)."""

    timeout_s: float
    ttl_s: float
    priority: int = 0


def task_options(
    query: Mapping[str, str], workspace: WorkspaceView, settings: Settings
) -> TaskOptions:
    """The task's options from the query: `timeout_s` (> 0, at most the workspace's
    `timeout_s`, its default), `ttl_s` (> 0, at most `NGPU_TASK_TTL_S`, its default) and
    `priority` (an integer 0-9, at most the workspace's `max_priority`; default 0). An
    empty value is the default."""
    timeout_s = _seconds(
        query.get("timeout_s"), workspace.timeout_s, field="timeout_s",
        limit=f"the workspace's timeout_s ({workspace.timeout_s:g})",
    )  # fmt: skip
    ttl_s = _seconds(
        query.get("ttl_s"), settings.task_ttl_s, field="ttl_s",
        limit=f"NGPU_TASK_TTL_S ({settings.task_ttl_s:g})",
    )  # fmt: skip
    return TaskOptions(timeout_s, ttl_s, _priority(query.get("priority"), workspace.max_priority))


def _seconds(raw: str | None, most: float, *, field: str, limit: str) -> float:
    if raw is None or raw == "":
        return most
    value = float(raw) if len(raw) <= 32 and _NUMBER.match(raw) else math.nan
    if not (math.isfinite(value) and 0 < value <= most):
        raise BadRequest(f"must be a number of seconds above 0 and at most {limit}", field=field)
    return value


def _priority(raw: str | None, most: int) -> int:
    if raw is None or raw == "":
        return 0
    # ASCII digits only: int() takes other scripts' digits too.
    if not _PRIORITY.match(raw) or int(raw) > min(most, MAX_PRIORITY):
        raise BadRequest(
            f"must be an integer from 0 to the workspace's max_priority ({most})", field="priority"
        )
    return int(raw)


def prefer_wait(values: list[str]) -> int | None:
    """The `wait` preference of the `Prefer` headers `values` (RFC 7240: the first one
    counts; other preferences are ignored), in whole seconds, or None when there is none.
    `BadRequest` naming `Prefer` when it is not a whole number up to a day."""
    for preference in ",".join(values).split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not _SECONDS.match(value) or int(value) > PREFER_WAIT_MAX_S:
            raise BadRequest(
                f"wait must be a whole number of seconds from 0 to {PREFER_WAIT_MAX_S}",
                field="Prefer",
            )
        return int(value)
    return None
