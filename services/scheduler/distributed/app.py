"""The faust app that elects the scheduler's leader.

It has no agents and no tables: its only job is group membership. Faust's leader assignor
gives the one partition of its leader topic (`<app id>-__assignor-__leader`, created by
faust through the admin API) to exactly one member of the group; that member runs the
scheduler (see `Leadership`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faust
from faust.types.auth import CredentialsT

from services.bus.security import KafkaSecurity
from services.settings import Settings

APP_ID = "ngpu-scheduler"


@dataclass(frozen=True, slots=True)
class GroupTiming:
    """How fast the group notices a dead member and moves leadership.

    A killed leader is replaced about `session_timeout_s` after its last heartbeat (the
    broker refuses less than its `group.min.session.timeout.ms`, 6 s by default); one that
    leaves cleanly at once. `rebalance_timeout_s` bounds how long the group waits for each
    member to finish stepping down, which includes its last publish: `build_app` raises it
    to twice `NGPU_KAFKA_PUBLISH_TIMEOUT_S` when it is lower.
    """

    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    rebalance_timeout_s: float = 30.0


def app_id(settings: Settings) -> str:
    """The faust app id, which is also its consumer group: one per namespace."""
    return f"{settings.kafka_namespace}{APP_ID}"


def broker_urls(bootstrap: str) -> list[str]:
    """`host:port[,host:port...]` as faust broker URLs."""
    return [f"kafka://{server.strip()}" for server in bootstrap.split(",") if server.strip()]


def broker_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """`security` as faust's `broker_credentials`, which faust turns into the same
    aiokafka options the bus's clients take (`KafkaSecurity.client_options`)."""
    security.check()
    if not security.uses_tls and not security.uses_sasl:
        return None
    context = security.ssl_context()
    if not security.uses_sasl:
        return faust.SSLCredentials(context)
    assert security.password is not None  # `check` made sure
    return faust.SASLCredentials(
        username=security.username,
        password=security.password.get_secret_value(),
        ssl_context=context,  # None: SASL_PLAINTEXT
        mechanism=security.sasl_mechanism,
    )


def build_app(settings: Settings, timing: GroupTiming, datadir: Path) -> faust.App:
    """An unstarted app for the settings' Kafka cluster. `datadir` is where faust keeps
    its (here empty: memory store, no tables) table directory."""
    app = faust.App(
        app_id(settings),
        broker=broker_urls(settings.kafka_bootstrap),
        broker_credentials=broker_credentials(KafkaSecurity.from_settings(settings)),
        store="memory://",
        datadir=str(datadir),
        autodiscover=False,
        web_enabled=False,
        topic_allow_declare=True,
        topic_replication_factor=settings.kafka_replication_factor,
        broker_session_timeout=timing.session_timeout_s,
        broker_heartbeat_interval=timing.heartbeat_interval_s,
        broker_rebalance_timeout=max(
            timing.rebalance_timeout_s, 2 * settings.kafka_publish_timeout_s
        ),
    )
    app.finalize()
    return app
