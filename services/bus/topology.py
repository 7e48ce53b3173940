"""How each topic is laid out on Kafka: its key, cleanup, retention and record size.

Three lifetimes. The liveness topic holds heartbeats for `LIVENESS_RETENTION_MS`: a fold
needs the latest of each node, never its history. The task topic keeps a working window
(`NGPU_LOG_RETENTION_HOURS`, `DEFAULT_LOG_RETENTION_MS`): the archive of every task is
ClickHouse's raw event table, and folds start from checkpoints. The workspace and node
topics keep everything (`retention.ms=-1`, `retention.bytes=-1`). Compaction is not used
on the event topics: it keeps only the latest record of each key, and every fold needs
all of a key's events — a task's row needs its `TaskSubmitted` request as well as its
`TaskCompleted` response, and a node's state needs its `NodeRegistered` as well as the
deployment events that share its key. It is used on the checkpoint topics, whose newest
record is the only one that matters. Topics outside the event contract (tests, tools)
get the never-deleting spec, as the `Bus` contract promises a replayable log.

`schemas/asyncapi.yaml` documents these settings; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from events import topics

DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's own default record batch limit (1 MiB plus the batch overhead)."""

LIVENESS_RETENTION_MS = 5 * 60 * 1000
"""How long heartbeats are kept: many lost-after windows, few enough records that a fold
of the topic from its start stays cheap (1,000 nodes every 2 s: 150,000 records). Kafka
deletes whole segments, so the topic rolls one every fifth of that."""

DEFAULT_LOG_RETENTION_MS = 168 * 3600 * 1000
"""How long the task topic keeps records unless `NGPU_LOG_RETENTION_HOURS` says otherwise:
tasks are where the volume is, and a task's events are all written within its TTL and
timeouts (hours at most), so a fold that starts from a checkpoint, or replays what is left,
never needs what aged out. The workspace and node topics keep everything: their volume is
that of configuration changes, and their folds start from checkpoints."""

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
    segment_ms: int | None = None

    def configs(self, replication_factor: int) -> dict[str, str]:
        """The topic configs to create it with. `acks=all` waits for the in-sync replicas,
        and at least two of them must hold a record before it is acknowledged once there
        are two replicas; an out-of-sync replica never becomes leader."""
        configs = {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "retention.bytes": str(self.retention_bytes),
            "max.message.bytes": str(self.max_message_bytes),
            "min.insync.replicas": str(min(2, replication_factor)),
            "unclean.leader.election.enable": "false",
        }
        if self.segment_ms is not None:
            configs["segment.ms"] = str(self.segment_ms)
        return configs


TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        TopicSpec(topics.WORKSPACES, key_field="workspace_id"),
        TopicSpec(topics.NODES, key_field="node_id"),
        TopicSpec(topics.TASKS, key_field="task_id", max_message_bytes=TASKS_MAX_MESSAGE_BYTES,
                  retention_ms=DEFAULT_LOG_RETENTION_MS),
        TopicSpec(topics.LIVENESS, key_field="node_id", retention_ms=LIVENESS_RETENTION_MS,
                  segment_ms=LIVENESS_RETENTION_MS // 5),
    )
}  # fmt: skip
"""The spec of every topic of `events.topics`."""

MAX_MESSAGE_BYTES = max(spec.max_message_bytes for spec in TOPICS.values())
"""The largest record any topic accepts (the producer's request limit)."""


OUTPUT = "ngpu.task-output"
"""Streamed container output on Kafka (`services.output`): chunks of the responses of the
tasks submitted with `stream`, keyed by task id, for the ingress waiting for them. Not
history: never folded nor archived (the whole body is in `TaskCompleted`), kept an hour."""

OUTPUT_RETENTION_MS = 3600 * 1000

CHECKPOINTS = "ngpu.checkpoints."
"""The prefix of the checkpoint topics, one per fold (`ngpu.checkpoints.scheduler`):
compacted, so each keeps its newest checkpoint (one key), with room for large states."""

CHECKPOINT_MAX_BYTES = 16 << 20


def checkpoint_topic(name: str) -> str:
    """The topic of the checkpoints of the fold `name`."""
    return CHECKPOINTS + name


def spec_for(topic: str) -> TopicSpec:
    """The spec of `topic` (a logical name): its entry in `TOPICS`, a checkpoint topic's,
    the output topic's, else the default."""
    if topic.startswith(CHECKPOINTS):
        return TopicSpec(topic, cleanup_policy="compact", segment_ms=10 * 60 * 1000,
                         max_message_bytes=CHECKPOINT_MAX_BYTES)  # fmt: skip
    if topic == OUTPUT:
        return TopicSpec(topic, key_field="task_id", retention_ms=OUTPUT_RETENTION_MS,
                         segment_ms=OUTPUT_RETENTION_MS // 4)  # fmt: skip
    return TOPICS.get(topic) or TopicSpec(topic)
