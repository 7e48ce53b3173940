"""The one settings class. Every value comes from `NGPU_*` environment variables (or a
`.env` file); the defaults run the embedded mode with zero configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.errors import NgpuError

ENV_PREFIX = "NGPU_"


_KAFKA_SECURITY_WORDS = (
    "kafka_security_protocol", "kafka_sasl_mechanism", "kafka_ssl_ca_file",
    "kafka_ssl_cert_file", "kafka_ssl_key_file", "kafka_sasl_username",
)  # fmt: skip
"""Settings read with surrounding blanks dropped, where empty means unset."""


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
    kafka_namespace: str = Field(
        "",
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Prefix of the Kafka topics and consumer groups of this deployment "
        "(e.g. staging.), so several deployments can share a cluster.",
    )
    kafka_replication_factor: int = Field(
        1,
        ge=1,
        le=16,
        description="Replicas of each Kafka topic the bus creates (at most the broker count).",
    )
    kafka_publish_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Longest a publish waits for Kafka to acknowledge before it fails "
        "(the HTTP layer answers 503); nothing of a failed publish is stored later.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every Kafka client connects: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or "
        "SASL_SSL (SASL authentication, over TLS).",
    )
    kafka_ssl_ca_file: Path | None = Field(
        None,
        description="PEM file of the CA certificates that sign the Kafka brokers' "
        "certificates (SSL, SASL_SSL); unset: the system's CAs. Host names are verified.",
    )
    kafka_ssl_cert_file: Path | None = Field(
        None,
        description="PEM client certificate (and chain) for mutual TLS with Kafka; its key "
        "in NGPU_KAFKA_SSL_KEY_FILE or in the same file.",
    )
    kafka_ssl_key_file: Path | None = Field(
        None, description="PEM private key of NGPU_KAFKA_SSL_CERT_FILE."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted NGPU_KAFKA_SSL_KEY_FILE."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (SASL_PLAINTEXT, SASL_SSL): PLAIN, SCRAM-SHA-256 or "
        "SCRAM-SHA-512.",
    )  # fmt: skip
    kafka_sasl_username: str | None = Field(None, description="SASL user name on Kafka.")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password on Kafka (never logged)."
    )
    clickhouse_dsn: str = Field(
        "", description="ClickHouse DSN; empty means chdb:///<data_dir>/clickhouse."
    )
    host: str = Field("127.0.0.1", description="HTTP bind address.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    tls_cert_file: Path | None = Field(
        None,
        description="PEM certificate (chain) the ingress's HTTP server presents: with "
        "NGPU_TLS_KEY_FILE it serves HTTPS (only). Unset: plain HTTP.",
    )
    tls_key_file: Path | None = Field(
        None, description="PEM private key (unencrypted) of NGPU_TLS_CERT_FILE."
    )
    admin_token: SecretStr | None = Field(
        None, description="Management API token; generated into the data dir when unset."
    )
    node_join_token: SecretStr | None = Field(
        None, description="Token node agents present to register; generated when unset."
    )
    node_call_key: SecretStr | None = Field(
        None,
        description="Key from which each deployment's secret is derived (the dispatcher "
        "signs every call to a node's proxy with it). Every ingress and dispatcher must "
        "share it; unset: derived from NGPU_ADMIN_TOKEN when that is set, else generated "
        "into the data dir.",
    )
    webhook_key: SecretStr | None = Field(
        None,
        description="Key from which each workspace's webhook signing secret is derived "
        "(with a per-workspace salt kept in the workspace events). Every ingress and "
        "webhooks process must share it; unset: derived from NGPU_ADMIN_TOKEN when that is "
        "set, else generated into the data dir.",
    )
    secrets_key: SecretStr | None = Field(
        None,
        description="Fernet key(s) that encrypt workspaces' registry credentials in the "
        "event log (comma-separated: the first encrypts, every one decrypts, for rotation). "
        "Every ingress must share them; unset: registry_auth is refused.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] | None = Field(
        None, description="How log lines look: json or console; unset: console on a TTY, else "
        "json (read by services.logs).",
    )  # fmt: skip
    access_log: bool = Field(True, description="Whether the ingress logs a line per request.")
    trace_trust_caller: bool = Field(
        False,
        description="With traces on: continue a caller's `traceparent` (its trace id and "
        "sampled flag; a `tracestate` of at most 512 characters). Off, a request's trace "
        "starts at the gateway and links to the caller's.",
    )
    metrics_public: bool = Field(
        False, description="Serve /metrics without the admin token (keep it off a public port)."
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="A port (on NGPU_HOST) serving /metrics, /healthz and /readyz apart from "
        "the ingress: for processes that run no ingress. Unset: none.",
    )
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

    max_body_bytes: int = Field(
        1 << 20, ge=1024, le=64 << 20, description="Largest NGPU API request body (413 above)."
    )
    max_response_bytes: int = Field(
        8 << 20, ge=1024, le=256 << 20, description="Largest container response kept."
    )
    queue_max_bytes: int = Field(
        1 << 30,
        ge=1024,
        le=1 << 40,
        description="Bytes of request bodies of the tasks not ended (queued or running) an "
        "ingress admits in all; a submission that would go over is refused (429).",
    )
    queue_max_bytes_per_workspace: int = Field(
        256 << 20,
        ge=1024,
        le=1 << 40,
        description="The same cap per workspace (at most NGPU_QUEUE_MAX_BYTES, at least "
        "NGPU_MAX_BODY_BYTES).",
    )
    task_max_attempts: int = Field(
        3, ge=1, le=20, description="Attempts of a task (first dispatch included)."
    )
    task_ttl_s: float = Field(
        300.0, gt=0, le=86_400, description="How long a task may wait for capacity."
    )
    sync_wait_max_s: float = Field(
        900.0, gt=0, le=86_400, description="Longest a synchronous request is held open."
    )
    rate_limit_per_s: float = Field(
        500.0, ge=0, description="NGPU API requests per second per workspace (0: no limit)."
    )
    rate_limit_burst: int = Field(1000, ge=1, description="Requests a workspace may burst.")
    brc20_check_rate_per_s: float = Field(
        5.0,
        ge=0,
        description="/brc20/checkAddress requests per second per client IP (an IPv6 /64) and "
        "ingress process; the route needs no bearer (0: no limit).",
    )
    brc20_check_burst: int = Field(
        20, ge=1, description="/brc20/checkAddress requests a client IP may burst."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description='CIDRs whose X-Forwarded-For is believed (JSON list, e.g. ["10.0.0.0/8"]).',
    )
    node_host_allow: list[str] = Field(
        default_factory=list,
        description="CIDRs a node's registered host may be in although loopback, private, "
        'link-local or otherwise not global (JSON list, e.g. ["10.0.0.0/8"]); loopback is '
        "allowed anyway when NGPU_HOST is a loopback address.",
    )
    node_register_rate_per_s: float = Field(
        1.0, ge=0, description="Node registrations per second per client IP (0: no limit)."
    )
    node_register_burst: int = Field(
        20, ge=1, description="Node registrations a client IP may burst."
    )
    dispatcher_concurrency: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Container calls in flight per workspace and dispatcher (the scheduler "
        "keeps them within the workspace's ready replicas' slots); one workspace never "
        "waits for another's calls.",
    )
    webhook_host_allow: list[str] = Field(
        default_factory=list,
        description="CIDRs a webhook target may be in although loopback, private, link-local "
        'or otherwise not global (JSON list, e.g. ["10.0.0.0/8"]). Checked at submission '
        "and, for a DNS name, on every address it resolves to at each delivery.",
    )
    webhook_retry_base_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="Pause before a webhook's second attempt; each later pause doubles "
        "(up to NGPU_WEBHOOK_RETRY_MAX_S), and is drawn between half and all of that.",
    )
    webhook_retry_max_s: float = Field(
        3600.0, gt=0, le=86_400, description="Longest pause between two webhook attempts."
    )
    webhook_retry_window_s: float = Field(
        86_400.0,
        gt=0,
        le=7 * 86_400,
        description="How long after its task's event a webhook is retried before it is abandoned.",
    )
    http_max_connections: int = Field(
        4096,
        ge=1,
        le=1_000_000,
        description="Connections (or requests in progress) the HTTP server holds at once; "
        "a request beyond them is answered 503 (uvicorn's limit_concurrency).",
    )
    http_header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="A request's head must arrive within this long of the connection "
        "opening (or of its first byte on a kept-alive connection), else it is closed.",
    )
    http_body_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="A request's body must arrive within this long of its head, else the "
        "connection is closed.",
    )
    http_max_header_bytes: int = Field(
        65_536,
        ge=1024,
        le=1 << 24,
        description="Largest request head (request line and headers); larger: 431.",
    )
    http_keep_alive_s: int = Field(
        5, ge=1, le=3600, description="How long an idle kept-alive connection stays open."
    )
    projector_linger_s: float = Field(
        1.0, ge=0, le=60, description="How long the projector gathers events into one insert."
    )
    checkpoint_interval_s: float = Field(
        30.0, ge=1, le=3600, description="How often folds of the log save a checkpoint."
    )
    log_retention_hours: float = Field(
        168.0, ge=1, le=87_600,
        description="How long the task topic keeps records (embedded: once every consumer "
        "group and checkpoint has passed them).",
    )  # fmt: skip
    # The TTL is computed in ClickHouse's DateTime, which wraps after 2106: a longer
    # retention would expire bodies at once.
    body_retention_days: int | None = Field(
        None,
        ge=1,
        le=3650,
        description="Request and response bodies older than this many days are blanked in "
        "ClickHouse (a column TTL); every other field of a task stays. Unset: kept forever.",
    )
    brc20_provider: Literal["auto", "none", "file", "hiro", "unisat"] = Field(
        "auto",
        description="Where BRC-20 balances come from; auto: file when NGPU_BRC20_FILE is set.",
    )
    brc20_file: Path | None = Field(None, description="JSON holdings file for the file provider.")
    brc20_url: str = Field("", description="Indexer base URL (hiro/unisat); empty: its public URL.")
    brc20_api_key: SecretStr | None = Field(None, description="Indexer API key.")
    brc20_ticker: str = Field("AINN", min_length=1, max_length=16, description="Required ticker.")
    brc20_min_balance: int = Field(1, ge=1, description="Required balance of the ticker.")
    brc20_timeout_s: float = Field(5.0, gt=0, le=120, description="Indexer request timeout.")
    brc20_cache_ttl_s: float = Field(60.0, ge=0, le=86_400, description="Indexer answer cache.")
    btc_network: Literal["mainnet", "testnet", "signet", "regtest"] = Field(
        "mainnet", description="Network BTC addresses must belong to."
    )

    @property
    def resolved_brc20_provider(self) -> str:
        if self.brc20_provider == "auto":
            return "file" if self.brc20_file else "none"
        return self.brc20_provider

    @model_validator(mode="after")
    def _secrets_key_parses(self) -> Settings:
        from services.secretbox import SecretBox

        if self.secrets_key is not None:
            SecretBox.parse(self.secrets_key.get_secret_value())  # ValueError names the setting
        return self

    @model_validator(mode="after")
    def _trusted_proxies_parse(self) -> Settings:
        import ipaddress

        for value in self.trusted_proxies:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise ValueError(f"NGPU_TRUSTED_PROXIES: {value!r} is not a CIDR") from exc
        return self

    @model_validator(mode="after")
    def _host_allow_lists_parse(self) -> Settings:
        import ipaddress

        for name, values in (("NGPU_NODE_HOST_ALLOW", self.node_host_allow),
                             ("NGPU_WEBHOOK_HOST_ALLOW", self.webhook_host_allow)):  # fmt: skip
            for value in values:
                try:
                    ipaddress.ip_network(value.strip(), strict=False)
                except ValueError as exc:
                    raise ValueError(f"{name}: {value!r} is not a CIDR") from exc
        return self

    @model_validator(mode="before")
    @classmethod
    def _tls_files_empty_is_unset(cls, data: object) -> object:
        if isinstance(data, dict):
            data = {k: (None if k.startswith("tls_") and v == "" else v) for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _tls_files_load(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "NGPU_TLS_CERT_FILE and NGPU_TLS_KEY_FILE go together: set both (HTTPS) or "
                "neither (HTTP)"
            )
        if self.tls_cert_file is not None and self.tls_key_file is not None:
            from services.certs import CertificateError, server_context

            try:
                server_context(self.tls_cert_file, self.tls_key_file)
            except CertificateError as exc:
                raise ValueError(f"NGPU_TLS_CERT_FILE, NGPU_TLS_KEY_FILE: {exc}") from exc
        return self

    @model_validator(mode="after")
    def _lost_after_outlasts_heartbeats(self) -> Settings:
        if self.node_lost_after_s <= self.heartbeat_interval_s:
            raise ValueError(
                "NGPU_NODE_LOST_AFTER_S must exceed NGPU_HEARTBEAT_INTERVAL_S, "
                "or every node is lost between two heartbeats"
            )
        return self

    @model_validator(mode="after")
    def _queue_caps_nest(self) -> Settings:
        if self.queue_max_bytes_per_workspace > self.queue_max_bytes:
            raise ValueError(
                "NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE must be at most NGPU_QUEUE_MAX_BYTES"
            )
        if self.max_body_bytes > self.queue_max_bytes_per_workspace:
            raise ValueError(
                "NGPU_MAX_BODY_BYTES must be at most NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE, or a "
                "body the ingress takes could never be queued"
            )
        return self

    @model_validator(mode="after")
    def _kafka_needs_bootstrap(self) -> Settings:
        if self.bus == "kafka" and not self.kafka_bootstrap.strip():
            raise ValueError("NGPU_KAFKA_BOOTSTRAP is required when NGPU_BUS=kafka")
        return self

    @model_validator(mode="before")
    @classmethod
    def _kafka_security_words(cls, data: object) -> object:
        # Protocol and mechanism in any case; an empty variable is an unset one.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in _KAFKA_SECURITY_WORDS:
            value = data.get(name)
            if isinstance(value, str):
                value = value.strip()
                if name in ("kafka_security_protocol", "kafka_sasl_mechanism"):
                    value = value.upper()
                data[name] = value or (None if name != "kafka_security_protocol" else "PLAINTEXT")
        return data

    @model_validator(mode="after")
    def _kafka_security_fits(self) -> Settings:
        from services.bus.security import KafkaSecurity

        security = KafkaSecurity.from_settings(self)
        found = security.problems()
        if found:
            raise ValueError("; ".join(found))
        if self.bus == "kafka":
            security.ssl_context()  # the files load (a KafkaSecurityError names which not)
        return self

    @model_validator(mode="after")
    def _bodies_fit_kafka_records(self) -> Settings:
        if self.bus != "kafka":
            return self
        from services.bus.topology import TASKS_MAX_MESSAGE_BYTES

        # A body travels inside one task event, base64-encoded in the worst case.
        fits = (TASKS_MAX_MESSAGE_BYTES - (64 << 10)) * 3 // 4
        for name in ("max_body_bytes", "max_response_bytes"):
            if getattr(self, name) > fits:
                raise ValueError(
                    f"NGPU_{name.upper()} must be at most {fits} with NGPU_BUS=kafka: a "
                    "body larger than that does not fit in one record of the tasks topic"
                )
        return self

    @property
    def url_scheme(self) -> str:
        """`https` when the ingress serves TLS (`NGPU_TLS_*`), else `http`."""
        return "https" if self.tls_cert_file is not None else "http"

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
