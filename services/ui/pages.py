"""What each dashboard page shows, gathered from the read paths the admin API uses: the
directory the ingress folds (workspaces, nodes, deployments), its task view (the live
state of recent tasks) and the task store's queries. The answers are plain values for
the templates.

A Workspace ID is its customer's bearer credential, so no page shows one: a workspace
is its name and a short hash of its id (`services.logs.workspace_hash`, as in the logs),
and filters name a workspace by that hash."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from projections import TaskDetail, TaskState
from services.ingress.context import IngressContext
from services.ingress.directory import Directory
from services.ingress.routers.nodes import node_body
from services.ingress.routers.tasks import task_view
from services.ingress.routers.workspaces import workspace_body
from services.ingress.store import TaskStore
from services.logs import workspace_hash

PHASES: tuple[str, ...] = ("queued", "running", "completed", "failed", "cancelled", "expired")
_STATE_OF_PHASE = {
    "queued": TaskState.QUEUED,
    "running": TaskState.RUNNING,
    "completed": TaskState.COMPLETED,
    "failed": TaskState.FAILED,
    "cancelled": TaskState.CANCELLED,
    "expired": TaskState.EXPIRED,
}
_PHASE_OF_STATE = {state: phase for phase, state in _STATE_OF_PHASE.items()}

TASK_WINDOWS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
QUEUE_WINDOWS: dict[str, tuple[timedelta, int, str]] = {
    "1h": (timedelta(hours=1), 60, "minute"),
    "6h": (timedelta(hours=6), 300, "5 minutes"),
    "24h": (timedelta(hours=24), 900, "15 minutes"),
    "7d": (timedelta(days=7), 3600, "hour"),
}
"""Each window of the queue delay chart, its bucket length in seconds, and that in words."""
USAGE_DAYS = (7, 30, 90)
TASK_ROWS = 100
"""The task list shows the newest this many tasks that match its filters."""
TOP_WORKSPACES = 6
"""The usage chart stacks this many workspaces (by GPU time) and the rest as one."""
ERRORS_PER_WORKSPACE = 5
ERRORS_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Label:
    """How a page names a workspace: its name (None once deleted) and the hash of its id."""

    name: str | None
    hash: str

    @property
    def text(self) -> str:
        return f"{self.name or '(deleted)'} · {self.hash}"


@dataclass(slots=True)
class Labels:
    """The labels of the workspaces of a directory, and the way back from a hash."""

    directory: Directory
    _by_hash: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_hash = {workspace_hash(ws_id): ws_id for ws_id in self.directory.workspaces}

    def of(self, workspace_id: str) -> Label:
        view = self.directory.workspaces.get(workspace_id)
        return Label(view.registered.name if view else None, workspace_hash(workspace_id))

    def workspace_of(self, hash_: str) -> str | None:
        """The id of the (live) workspace whose hash is `hash_`."""
        return self._by_hash.get(hash_)

    def options(self) -> list[Label]:
        """Every live workspace, by name: the choices of a workspace filter."""
        return sorted((self.of(ws_id) for ws_id in self.directory.workspaces),
                      key=lambda label: (label.name or "", label.hash))  # fmt: skip


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else max(0.0, (end - start).total_seconds())


async def task_rows(
    context: IngressContext,
    store: TaskStore,
    labels: Labels,
    *,
    workspace: str,
    phase: str,
    window: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """The newest `TASK_ROWS` tasks submitted within `window` of `now`, of the workspace
    whose hash is `workspace` (all when ""; none when no workspace has it), in `phase`
    (any when ""). A task's phase is the ingress's task view's when it knows the task (it
    follows the log, the store lags it by the projector's linger), else the store's."""
    workspace_id = labels.workspace_of(workspace) if workspace else None
    if workspace and workspace_id is None:
        return []
    states = (_STATE_OF_PHASE[phase],) if phase in _STATE_OF_PHASE else ()
    start = now - TASK_WINDOWS.get(window, TASK_WINDOWS["24h"])
    found = await store.recent(start, now + timedelta(minutes=1), workspace_id=workspace_id,
                               states=states, limit=TASK_ROWS)  # fmt: skip
    rows = []
    for task in found:
        live = context.tasks.status(task.task_id) if context.tasks else None
        stored = _PHASE_OF_STATE[task.state]
        current = live.phase if live is not None else stored
        if states and current != phase:
            continue  # it moved on since the store saw it
        ended = task.ended_at if current == stored else None
        rows.append({
            "task_id": task.task_id, "submitted_at": task.submitted_at,
            "workspace": labels.of(task.workspace_id), "mode": task.mode,
            "path": task.param_url, "phase": current, "attempts": task.attempts,
            "node_id": task.node_id, "status_code": task.status_code,
            "code": task.code or (live.code if live else ""),
            "duration_s": _seconds(task.submitted_at, ended),
            "gpu_s": task.gpu_us / 1e6 if task.gpu_us else None,
        })  # fmt: skip
    return rows


async def task_timeline(
    context: IngressContext, store: TaskStore, labels: Labels, task_id: str
) -> dict[str, Any] | None:
    """A task's state, options and every archived event with its time from the
    submission, as `GET /v1/tasks/{taskID}` shows them, and the request's facts from the
    detail (no body); None for a task neither the archive nor the task view knows."""
    history = await store.history(task_id)
    live = context.tasks.status(task_id) if context.tasks else None
    view = task_view(task_id, history)
    if view is None:
        if live is None:
            return None
        # Submitted, not archived yet (the projector's linger): the task view knows it.
        return {"task_id": task_id, "workspace": labels.of(live.workspace_id),
                "phase": live.phase, "archived": False, "events": [], "detail": None,
                "ended": live.ended, "options": [], "took_s": None,
                "phases": []}  # fmt: skip
    detail = await store.detail(task_id)
    events = view["events"]
    origin = datetime.fromisoformat(events[0]["at"]) if events else None
    timeline = []
    for event in events:
        at = datetime.fromisoformat(event["at"])
        fields = {k: v for k, v in event.items() if k not in ("type", "at") and v not in ("", None)}
        timeline.append({"type": event["type"], "at": at, "fields": fields,
                         "offset_s": _seconds(origin, at) if origin else None})  # fmt: skip
    phase = live.phase if live is not None else view["state"]
    ends = [e for e in timeline if e["type"] in _ENDINGS and not e["fields"].get("retryable")]
    took = ends[0]["offset_s"] if ends else None
    return {
        "task_id": task_id,
        "workspace": labels.of(view["workspace_id"]),
        "phase": phase,
        "archived": True,
        "ended": phase not in ("queued", "running"),
        "took_s": took,
        "phases": _phases(timeline, took),
        "options": [
            ("Priority", view["priority"]),
            ("Timeout", f"{view['timeout_s']:g} s"),
            ("Time to live", f"{view['ttl_s']:g} s"),
            ("Webhook", view["webhook"] or "—"),
        ],
        "detail": None if detail is None else _facts(detail),
        "events": timeline,
    }


_ENDINGS = frozenset(("TaskCompleted", "TaskFailed", "TaskCancelled", "TaskExpired"))


def _phases(timeline: list[dict[str, Any]], took: float | None) -> list[dict[str, Any]]:
    """An ended task's life in two parts, as shares of it (x and width, in percent): in
    the queue until its first dispatch, then dispatched (every attempt) until its end."""
    if not took:
        return []
    dispatched = next((e["offset_s"] for e in timeline if e["type"] == "TaskDispatched"), took)
    first = min(dispatched, took)
    parts = [("queued", "queued for", 0.0, first),
             ("running", "dispatched for", first, took)]  # fmt: skip
    return [
        {"name": name, "words": words, "seconds": end - start,
         "x": round(100 * start / took, 3), "width": round(100 * (end - start) / took, 3)}
        for name, words, start, end in parts
        if end > start
    ]  # fmt: skip


def _facts(detail: TaskDetail) -> dict[str, Any]:
    """What the detail adds to the history: the request, the caller and the node, and
    the GPU time as `getDetailed` bills it (whole seconds, rounded up). No body."""
    return {
        "request_url": detail.request_url,
        "method": detail.method,
        "user_ip": detail.user_ip,
        "node_ip": detail.node_ip,
        "node_address": detail.node_address,
        "request_time": detail.request_time,
        "response_time": detail.response_time,
        "gpu_s": detail.gpu_duration_s,
    }


def _node_status(body: dict[str, Any]) -> str:
    for word in ("revoked", "lost", "draining"):
        if body[word]:
            return word
    return "healthy" if body["healthy"] else "silent"


def nodes(context: IngressContext, labels: Labels, now: datetime) -> list[dict[str, Any]]:
    """Every node as `GET /v1/nodes` answers it, its status in one word (`healthy`,
    `silent`: no heartbeat within the window, `draining`, `lost`, `revoked`), its GPUs
    counted by type and memory, and its deployments' workspaces as labels."""
    found = []
    directory = context.follower.directory
    for node in sorted(directory.nodes.values(), key=lambda n: n.registered.node_id):
        body = node_body(node, context, now)
        gpus = Counter((g["type"], g["memory_mb"]) for g in body["gpus"])
        deployments = [
            {**{k: v for k, v in d.items() if k != "workspace_id"},
             "workspace": labels.of(d["workspace_id"])}
            for d in body["deployments"]
        ]  # fmt: skip
        found.append({
            "node_id": body["node_id"], "address": body["address"], "host": body["host"],
            "region": body["region"], "runtime": body["runtime"],
            "status": _node_status(body), "in_flight": body["in_flight"],
            "heartbeat_s": max(0.0, (now - node.last_heartbeat).total_seconds()),
            "gpus": [{"type": t, "memory_mb": m, "count": n} for (t, m), n in sorted(gpus.items())],
            "tls": bool(body["proxy_cert_sha256"]), "deployments": deployments,
            "live": sum(1 for d in deployments if d["state"] not in ("stopped", "failed")),
        })  # fmt: skip
    return found


async def workspaces(
    context: IngressContext, store: TaskStore | None, labels: Labels, now: datetime
) -> list[dict[str, Any]]:
    """Every workspace as `GET /v1/workspaces/{id}` answers it (its replicas counted and
    why some are not placed), without its ID, user key or environment; its deployments
    on each node; its recent errors: the failed or expired tasks of the last 24 hours
    (the store's, none when this process has no store), deployments that failed, and a
    rollout that was rolled back."""
    failures: dict[str, list[Any]] = {}
    if store is not None:
        for failure in await store.failures(now - ERRORS_WINDOW, now, ERRORS_PER_WORKSPACE):
            failures.setdefault(failure.workspace_id, []).append(failure)
    directory = context.follower.directory
    found = []
    for view in sorted(directory.workspaces.values(), key=lambda v: v.registered.name):
        body = workspace_body(view, context)
        ws_id = view.registered.workspace_id
        deployments = [
            {"node_id": node.registered.node_id, "deployment_id": dep_id, "state": d.state,
             "revision": d.spec.revision or 1, "reason": d.reason}
            for node in directory.nodes.values()
            for dep_id, d in sorted(node.deployments.items())
            if d.spec.workspace_id == ws_id and d.state != "stopped"
        ]  # fmt: skip
        found.append({
            "label": labels.of(ws_id), "image": body["image"], "gpu": body["gpu"],
            "revision": body["revision"], "replicas": body["replicas"],
            "scaling": body["scaling"], "rollout": body["rollout"],
            "timeout_s": body["timeout_s"], "concurrency": body["concurrency"],
            "created_at": view.created_at, "deployments": deployments,
            "failures": failures.get(ws_id, []),
            "failed_deployments": [d for d in deployments if d["state"] == "failed"],
        })  # fmt: skip
    return found


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 9)


async def usage(store: TaskStore, labels: Labels, days: int, today: date) -> dict[str, Any]:
    """GPU-hours of completed tasks over the last `days` UTC days up to `today`: per day
    stacked by workspace (the `TOP_WORKSPACES` largest and the rest as one), and per
    workspace, with their task counts (the analytics API's `usage` queries)."""
    start = datetime.combine(today - timedelta(days=days - 1), time(), tzinfo=UTC)
    end = datetime.combine(today + timedelta(days=1), time(), tzinfo=UTC)
    per_workspace = sorted(await store.usage("workspace", start, end, None),
                           key=lambda row: (-row.gpu_seconds, row.key))  # fmt: skip
    per_day = {row.key: row.gpu_seconds for row in await store.usage("day", start, end, None)}
    dates = [(start.date() + timedelta(days=n)).isoformat() for n in range(days)]
    datasets, stacked = [], Counter[str]()
    for row in per_workspace[:TOP_WORKSPACES]:
        mine = {r.key: r.gpu_seconds for r in await store.usage("day", start, end, row.key)}
        stacked.update(mine)
        datasets.append({"label": labels.of(row.key).text,
                         "data": [_hours(mine.get(d, 0.0)) for d in dates]})  # fmt: skip
    rest = [_hours(max(0.0, per_day.get(d, 0.0) - stacked.get(d, 0.0))) for d in dates]
    if any(rest):
        datasets.append({"label": "other workspaces", "data": rest})
    labelled = [(labels.of(row.key), row) for row in per_workspace]
    per_workspace_chart = {
        "kind": "horizontal-bar",
        "unit": "GPU-hours",
        "labels": [label.text for label, _ in labelled],
        "datasets": [{"label": "GPU-hours", "data": [_hours(r.gpu_seconds) for _, r in labelled]}],
    }
    return {
        "days": days,
        "from": start.date(),
        "to": today,
        "total_tasks": sum(row.tasks for row in per_workspace),
        "per_day": {
            "kind": "stacked-bar",
            "unit": "GPU-hours",
            "labels": dates,
            "datasets": datasets,
        },
        "per_workspace": per_workspace_chart,
        "total_seconds": sum(per_day.values()),
        "workspaces": [
            {"label": label, "tasks": row.tasks, "gpu_seconds": row.gpu_seconds}
            for label, row in labelled
        ],
    }


async def queue(
    context: IngressContext, store: TaskStore, labels: Labels, *, window: str, workspace: str,
    now: datetime,
) -> dict[str, Any]:  # fmt: skip
    """Queue delay (submission to first dispatch) per bucket over `window` up to `now`:
    mean, 90th percentile and longest, every bucket of the window listed (empty ones as
    gaps); and how many tasks the task view holds queued and running now."""
    span, bucket_s, bucket = QUEUE_WINDOWS.get(window, QUEUE_WINDOWS["1h"])
    workspace_id = labels.workspace_of(workspace) if workspace else None
    first = int((now - span).timestamp()) // bucket_s * bucket_s
    start = datetime.fromtimestamp(first, UTC)
    buckets = [] if workspace and workspace_id is None else await store.queue_delay(
        start, now + timedelta(seconds=1), bucket_s, workspace_id
    )  # fmt: skip
    by_start = {b.start: b for b in buckets}
    moments = [start + timedelta(seconds=bucket_s * n)
               for n in range(int((now - start).total_seconds()) // bucket_s + 1)]  # fmt: skip
    fmt = "%H:%M" if bucket_s < 86_400 and span <= timedelta(hours=24) else "%m-%d %H:%M"
    series: dict[str, list[float | None]] = {"mean": [], "p90": [], "max": []}
    for moment in moments:
        b = by_start.get(moment)
        series["mean"].append(round(b.avg_s, 3) if b else None)
        series["p90"].append(round(b.p90_s, 3) if b else None)
        series["max"].append(round(b.max_s, 3) if b else None)
    counts = context.tasks.view.counts_by_phase() if context.tasks else {}
    return {
        "bucket": bucket,
        "dispatched": sum(b.tasks for b in buckets),
        "worst_p90_s": max((b.p90_s for b in buckets), default=None),
        "queued_now": counts.get("queued", 0),
        "running_now": counts.get("running", 0),
        "chart": {
            "kind": "line",
            "unit": "seconds",
            "labels": [m.strftime(fmt) for m in moments],
            "datasets": [{"label": f"{name} wait", "data": data} for name, data in series.items()],
        },
        "buckets": [b for b in buckets if b.tasks][-12:][::-1],
    }
