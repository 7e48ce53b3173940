"""The message bus: the `Bus` protocol, the embedded SQLite log, Kafka, and event helpers."""

from services.bus.embedded import EmbeddedBus, EmbeddedConsumer, partition_for
from services.bus.errors import BusError, BusUnavailable
from services.bus.eventlog import decode_record, publish_events
from services.bus.factory import bus_from_settings
from services.bus.kafka import KafkaBus, KafkaConsumer
from services.bus.protocol import Bus, Consumer, Outgoing, Record, StartAt

__all__ = [
    "Bus",
    "BusError",
    "BusUnavailable",
    "Consumer",
    "EmbeddedBus",
    "EmbeddedConsumer",
    "KafkaBus",
    "KafkaConsumer",
    "Outgoing",
    "Record",
    "StartAt",
    "bus_from_settings",
    "decode_record",
    "partition_for",
    "publish_events",
]
