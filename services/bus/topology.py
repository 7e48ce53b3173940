"""How each topic is laid out on Kafka: its key, cleanup, retention and record size.

The three event logs are the source of truth: the scheduler and the projector rebuild
their state by replaying them from the beginning, so nothing may age out of them. Every
topic therefore keeps its records forever (`cleanup.policy=delete` with
`retention.ms=-1` and `retention.bytes=-1`: the policy that never deletes). Compaction is
not used anywhere: it keeps only the latest record of each key, and every fold needs all
of a key's events — a task's row needs its `TaskSubmitted` request as well as its
`TaskCompleted` response, and a node's state needs its `NodeRegistered` as well as the
deployment events that share its key. Topics outside the event contract (tests, tools)
get the same never-deleting spec, as the `Bus` contract promises a replayable log.

`schemas/asyncapi.yaml` documents these settings; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from events import topics

DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's own default record batch limit (1 MiB plus the batch overhead)."""

TASKS_MAX_MESSAGE_BYTES = 16 << 20
"""Room on the task topic for a response body of the default `NGPU_MAX_RESPONSE_BYTES`
(8 MiB), base64-encoded in its `TaskCompleted` envelope."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How the bus creates one topic. `key_field` names the event field the record key
    holds (empty for topics outside the event contract). The partition count comes from
    the bus's setting; an existing topic keeps its partitions and configs."""

    name: str
    key_field: str = ""
    cleanup_policy: str = "delete"
    retention_ms: int = -1
    retention_bytes: int = -1
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def configs(self, replication_factor: int) -> dict[str, str]:
        """The topic configs to create it with. `acks=all` waits for the in-sync replicas,
        and at least two of them must hold a record before it is acknowledged once there
        are two replicas; an out-of-sync replica never becomes leader."""
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "retention.bytes": str(self.retention_bytes),
            "max.message.bytes": str(self.max_message_bytes),
            "min.insync.replicas": str(min(2, replication_factor)),
            "unclean.leader.election.enable": "false",
        }


TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        TopicSpec(topics.WORKSPACES, key_field="workspace_id"),
        TopicSpec(topics.NODES, key_field="node_id"),
        TopicSpec(topics.TASKS, key_field="task_id", max_message_bytes=TASKS_MAX_MESSAGE_BYTES),
    )
}
"""The spec of every topic of `events.topics`."""

MAX_MESSAGE_BYTES = max(spec.max_message_bytes for spec in TOPICS.values())
"""The largest record any topic accepts (the producer's request limit)."""


def spec_for(topic: str) -> TopicSpec:
    """The spec of `topic` (a logical name): its entry in `TOPICS`, else the default."""
    return TOPICS.get(topic) or TopicSpec(topic)
