"""Free GPUs per node during one replica-planning pass, and the bin-packing choice."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Mapping

from services.scheduler.records import NodeStatus
from services.scheduler.state import ClusterState


class GpuPool:
    """The nodes that may take a new replica (active, heartbeat within the window, not
    excluded) and their free GPUs per type: the node's GPUs minus `gpu_count` of every
    live replica on it (requested, starting or ready). Scratch for one `plan_replicas`
    pass: `take` records a placement so later choices in the pass see it."""

    __slots__ = ("_anywhere", "_by_type", "_free")

    def __init__(self) -> None:
        self._free: dict[str, dict[str, int]] = {}
        # Per GPU type, (free, node_id) sorted: the bin-packing order.
        self._by_type: dict[str, list[tuple[int, str]]] = {}
        self._anywhere: list[tuple[int, str]] = []

    @classmethod
    def from_state(
        cls, state: ClusterState, now_s: float, window_s: float, excluded: Collection[str]
    ) -> GpuPool:
        pool = cls()
        for node_id in sorted(state.nodes):
            node = state.nodes[node_id]
            if (
                node.status is not NodeStatus.ACTIVE
                or node_id in excluded
                or now_s - node.last_heartbeat_s > window_s
            ):
                continue
            free = dict(node.gpus)
            for dep_id in state.node_deployment_ids(node_id):
                dep = state.deployments[dep_id]
                if dep.gpu_count > 0:
                    free[dep.gpu_type] = free.get(dep.gpu_type, 0) - dep.gpu_count
            pool._free[node_id] = free
            pool._anywhere.append((0, node_id))
            for kind, count in free.items():
                if count > 0:
                    pool._by_type.setdefault(kind, []).append((count, node_id))
        for entries in pool._by_type.values():
            entries.sort()
        return pool

    def free(self, node_id: str, gpu_type: str) -> int:
        """Free GPUs of `gpu_type` on `node_id` (0 for a node not in the pool)."""
        return max(0, self._free.get(node_id, {}).get(gpu_type, 0))

    def choose(
        self,
        gpu_type: str,
        gpu_count: int,
        replicas_on: Mapping[str, int],
        failures: Callable[[str], int],
    ) -> str | None:
        """The node for one more replica needing `gpu_type` x `gpu_count`, or None if no
        node has that many free. Preference, in order: a node without a replica of the
        workspace (`replicas_on`), one where it never failed (`failures`), the fewest free
        GPUs of the type that still suffice (bin-packing), the smallest node id."""
        if gpu_count <= 0:
            entries, start = self._anywhere, 0
        else:
            entries = self._by_type.get(gpu_type, [])
            start = bisect_left(entries, (gpu_count, ""))
        for i in range(start, len(entries)):
            node_id = entries[i][1]
            if not replicas_on.get(node_id) and not failures(node_id):
                return node_id
        if start >= len(entries):
            return None
        # No clean node: fall back to the least bad by the same preference order.
        best = min(
            entries[start:],
            key=lambda e: (replicas_on.get(e[1], 0), failures(e[1]), e[0], e[1]),
        )
        return best[1]

    def take(self, node_id: str, gpu_type: str, gpu_count: int) -> None:
        """Record that a replica needing `gpu_type` x `gpu_count` goes on `node_id`."""
        if gpu_count <= 0:
            return
        free = self._free[node_id][gpu_type]
        entries = self._by_type[gpu_type]
        del entries[bisect_left(entries, (free, node_id))]
        self._free[node_id][gpu_type] = free - gpu_count
        if free - gpu_count > 0:
            insort(entries, (free - gpu_count, node_id))
