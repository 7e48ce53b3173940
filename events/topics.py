"""Topic names. Each event family has one topic; the key keeps order per entity."""

WORKSPACES = "ngpu.workspaces"
"""Workspace lifecycle, keyed by workspace id."""
NODES = "ngpu.nodes"
"""Node and deployment lifecycle, keyed by node id (so a node's deployments stay in order)."""
TASKS = "ngpu.tasks"
"""Task lifecycle, keyed by task id."""
LIVENESS = "ngpu.liveness"
"""Node heartbeats, keyed by node id: liveness, not history. Kept for minutes, never
archived; only its consequences (`NodeLost`, a lost node heard from again) are history."""

HISTORY_TOPICS: tuple[str, ...] = (WORKSPACES, NODES, TASKS)
"""The event log proper: every record is part of the system's history (and archived)."""
ALL_TOPICS: tuple[str, ...] = (*HISTORY_TOPICS, LIVENESS)
