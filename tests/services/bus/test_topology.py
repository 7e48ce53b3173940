"""The topics' layout: `services/bus/topology.py`, the events it carries, and its
documentation in `schemas/asyncapi.yaml` agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from events import topics
from events.registry import EVENT_TYPES
from services.bus.topology import TOPICS, spec_for
from services.settings import Settings

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
DOC: dict[str, Any] = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
CHANNELS = {channel["address"]: channel for channel in DOC["channels"].values()}


def _resolve(ref: str) -> Any:
    node: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_topic_has_a_spec_and_a_channel_keyed_like_its_events() -> None:
    assert set(TOPICS) == set(CHANNELS) == set(topics.ALL_TOPICS)
    for name, cls in EVENT_TYPES.items():
        assert TOPICS[cls.TOPIC].key_field == cls.KEY_FIELD, name


@pytest.mark.parametrize("topic", topics.ALL_TOPICS)
def test_the_document_describes_each_topic_as_the_bus_creates_it(topic: str) -> None:
    spec = TOPICS[topic]
    channel = CHANNELS[topic]
    binding = channel["bindings"]["kafka"]
    assert channel["x-key-field"] == spec.key_field
    assert binding["topic"] == topic
    assert binding["partitions"] == Settings.model_fields["bus_partitions"].default
    segment = {} if spec.segment_ms is None else {"segment.ms": spec.segment_ms}
    assert binding["topicConfiguration"] == {
        "cleanup.policy": spec.cleanup_policy.split(","),
        "retention.ms": spec.retention_ms,
        "retention.bytes": spec.retention_bytes,
        "max.message.bytes": spec.max_message_bytes,
        **segment,
    }


def test_the_document_names_every_event_on_its_topic_with_its_schema_and_key() -> None:
    messages = DOC["components"]["messages"]
    assert set(messages) == set(EVENT_TYPES)
    on_channels = [name for channel in CHANNELS.values() for name in channel["messages"]]
    assert sorted(on_channels) == sorted(EVENT_TYPES)
    for name, cls in EVENT_TYPES.items():
        assert CHANNELS[cls.TOPIC]["messages"][name] == {"$ref": f"#/components/messages/{name}"}
        message = messages[name]
        assert message["payload"] == {"$ref": f"./events/{name}.json"}
        assert (SCHEMAS / "events" / f"{name}.json").is_file()
        key = _resolve(message["bindings"]["kafka"]["key"]["$ref"])
        assert key["type"] == "string"
        assert f"data.{cls.KEY_FIELD}" in key["description"]


def test_topics_outside_the_contract_keep_everything_too() -> None:
    spec = spec_for("t")
    assert (spec.key_field, spec.cleanup_policy, spec.retention_ms) == ("", "delete", -1)


@pytest.mark.parametrize(("replicas", "in_sync"), [(1, "1"), (2, "2"), (3, "2")])
def test_acknowledged_records_are_on_two_replicas_when_there_are_two(
    replicas: int, in_sync: str
) -> None:
    assert spec_for(topics.TASKS).configs(replicas)["min.insync.replicas"] == in_sync
