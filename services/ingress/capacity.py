"""Why a workspace runs fewer replicas than it wants, in words an operator reads: read from
the directory (nodes, their GPUs and the replicas they run), at the time of asking."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from services.ingress.directory import Directory, WorkspaceView
from services.scheduler.gpu import normalize_gpu_type

_LIVE = ("requested", "starting", "ready", "draining")


def replica_counts(
    directory: Directory, view: WorkspaceView, now: datetime, lost_after_s: float
) -> dict[str, Any]:
    """`{min, max, wanted, ready, starting, draining}`, and `unplaced` (why the replicas
    wanted beyond those running are not placed) when there are any. `wanted` is the
    scheduler's last decision, else `min`, within min and max."""
    ws = view.registered
    states = Counter(
        d.state
        for node in directory.nodes.values()
        for d in node.deployments.values()
        if d.spec.workspace_id == ws.workspace_id and d.state in _LIVE
    )
    low, high = view.replicas_min, max(view.replicas_min, view.replicas_max)
    decided = view.scaled["replicas"] if view.scaled else low
    wanted = min(max(int(decided), low), high)
    placed = states["requested"] + states["starting"] + states["ready"]
    counts: dict[str, Any] = {
        "min": view.replicas_min, "max": view.replicas_max, "wanted": wanted,
        "ready": states["ready"], "starting": states["requested"] + states["starting"],
        "draining": states["draining"],
    }  # fmt: skip
    if wanted > placed:
        counts["unplaced"] = _why(directory, ws.gpu_type, ws.gpu_count, now, lost_after_s)
    return counts


def _why(
    directory: Directory, gpu_type: str, gpu_count: int, now: datetime, lost_after_s: float
) -> str:
    kind = normalize_gpu_type(gpu_type)
    healthy = [n for n in directory.nodes.values() if n.healthy(now, lost_after_s)]
    with_type = 0
    for node in healthy:
        total = sum(1 for g in node.registered.gpus if normalize_gpu_type(g.type) == kind)
        if not total:
            continue
        with_type += 1
        used = sum(
            d.spec.gpu_count
            for d in node.deployments.values()
            if d.state in _LIVE and normalize_gpu_type(d.spec.gpu_type) == kind
        )
        if total - used >= gpu_count:
            return "a node has room: the scheduler places it at its next pass"
    if not with_type:
        return f"no healthy node has a {kind} GPU ({len(healthy)} healthy node(s))"
    return (f"no healthy node has {gpu_count} free {kind} GPU(s) ({with_type} healthy node(s) "
            f"with {kind}, all taken)")  # fmt: skip
