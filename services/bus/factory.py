"""Choosing the bus implementation from the settings."""

from __future__ import annotations

from services.bus.embedded import EmbeddedBus
from services.bus.kafka import KafkaBus
from services.bus.protocol import Bus
from services.bus.security import KafkaSecurity
from services.settings import Settings


def bus_from_settings(settings: Settings) -> Bus:
    """The bus named by `NGPU_BUS`, not yet started."""
    if settings.bus == "embedded":
        return EmbeddedBus(
            settings.bus_path,
            partitions=settings.bus_partitions,
            poll_interval_s=settings.bus_poll_interval_s,
        )
    return KafkaBus(
        settings.kafka_bootstrap,
        partitions=settings.bus_partitions,
        replication_factor=settings.kafka_replication_factor,
        namespace=settings.kafka_namespace,
        publish_timeout_s=settings.kafka_publish_timeout_s,
        log_retention_ms=int(settings.log_retention_hours * 3_600_000),
        security=KafkaSecurity.from_settings(settings),
    )
