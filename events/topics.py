"""Topic names. Each event family has one topic; the key keeps order per entity."""

WORKSPACES = "ngpu.workspaces"
"""Workspace lifecycle, keyed by workspace id."""
NODES = "ngpu.nodes"
"""Node and deployment lifecycle, keyed by node id (so a node's deployments stay in order)."""
TASKS = "ngpu.tasks"
"""Task lifecycle, keyed by task id."""

ALL_TOPICS: tuple[str, ...] = (WORKSPACES, NODES, TASKS)
