"""The one settings class. Every value comes from `NGPU_*` environment variables (or a
`.env` file); the defaults run the embedded mode with zero configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.errors import NgpuError

ENV_PREFIX = "NGPU_"


class SettingsError(NgpuError):
    """The configuration is invalid; the message names each offending variable."""


class Settings(BaseSettings):
    """Validated configuration. Construct it through `load_settings()` to get errors that
    name the environment variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(Path(".ngpu"), description="Where the embedded bus and store live.")
    bus: Literal["embedded", "kafka"] = Field("embedded", description="The message bus.")
    bus_partitions: int = Field(8, ge=1, le=1024, description="Partitions per topic.")
    bus_poll_interval_s: float = Field(
        0.2,
        gt=0,
        le=10,
        description="Embedded bus: how often an idle consumer checks for events written by "
        "other processes (events published in its own process wake it at once).",
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    clickhouse_dsn: str = Field(
        "", description="ClickHouse DSN; empty means chdb:///<data_dir>/clickhouse."
    )
    host: str = Field("127.0.0.1", description="HTTP bind address.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    admin_token: SecretStr | None = Field(
        None, description="Management API token; generated into the data dir when unset."
    )
    node_join_token: SecretStr | None = Field(
        None, description="Token node agents present to register; generated when unset."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    heartbeat_interval_s: float = Field(
        2.0, gt=0, le=300, description="How often node agents heartbeat (told at registration)."
    )
    node_lost_after_s: float = Field(
        15.0, gt=0, le=3600, description="A node with no heartbeat for this long is lost."
    )
    scheduler_tick_s: float = Field(
        0.5, gt=0, le=60, description="How often the scheduler checks liveness and replicas."
    )
    assignment_wait_max_s: float = Field(
        30.0, gt=0, le=300, description="Longest a node's assignments long poll is held."
    )

    @model_validator(mode="after")
    def _lost_after_outlasts_heartbeats(self) -> Settings:
        if self.node_lost_after_s <= self.heartbeat_interval_s:
            raise ValueError(
                "NGPU_NODE_LOST_AFTER_S must exceed NGPU_HEARTBEAT_INTERVAL_S, "
                "or every node is lost between two heartbeats"
            )
        return self

    @model_validator(mode="after")
    def _kafka_needs_bootstrap(self) -> Settings:
        if self.bus == "kafka" and not self.kafka_bootstrap.strip():
            raise ValueError("NGPU_KAFKA_BOOTSTRAP is required when NGPU_BUS=kafka")
        return self

    @property
    def bus_path(self) -> Path:
        """The embedded bus's SQLite file."""
        return self.data_dir / "bus.sqlite3"

    @property
    def resolved_clickhouse_dsn(self) -> str:
        """The ClickHouse DSN in force (embedded chdb under the data dir by default)."""
        return self.clickhouse_dsn or f"chdb:///{self.data_dir.resolve() / 'clickhouse'}"


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment (overrides win). Raises `SettingsError`
    whose message names every invalid variable, e.g. `NGPU_PORT: ...`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            if field:
                lines.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']} (got {err['input']!r})")
            else:
                lines.append(err["msg"].removeprefix("Value error, "))
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from exc
