"""Settings: zero-config defaults, and invalid values that stop the start by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.bus import KafkaBus, bus_from_settings
from services.certs import write_self_signed
from services.settings import SettingsError, load_settings


def test_defaults_run_the_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("NGPU_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.bus == "embedded"
    assert settings.data_dir == Path(".ngpu")
    assert settings.bus_path == Path(".ngpu/bus.sqlite3")
    assert settings.resolved_clickhouse_dsn == f"chdb:///{Path('.ngpu').resolve()}/clickhouse"
    assert settings.body_retention_days is None  # bodies are kept


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("NGPU_PORT", "eighty"),
        ("NGPU_PORT", "70000"),
        ("NGPU_BUS", "carrier-pigeon"),
        ("NGPU_BUS_PARTITIONS", "0"),
        ("NGPU_BUS_POLL_INTERVAL_S", "-1"),
        ("NGPU_LOG_LEVEL", "chatty"),
        ("NGPU_KAFKA_NAMESPACE", "no spaces/"),
        ("NGPU_KAFKA_REPLICATION_FACTOR", "0"),
        ("NGPU_KAFKA_PUBLISH_TIMEOUT_S", "0"),
        ("NGPU_BODY_RETENTION_DAYS", "0"),
        ("NGPU_BODY_RETENTION_DAYS", "3651"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_kafka_without_bootstrap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NGPU_BUS", "kafka")
    monkeypatch.setenv("NGPU_KAFKA_BOOTSTRAP", " ")
    with pytest.raises(SettingsError, match="NGPU_KAFKA_BOOTSTRAP"):
        load_settings()


@pytest.mark.parametrize("variable", ["NGPU_MAX_BODY_BYTES", "NGPU_MAX_RESPONSE_BYTES"])
def test_on_kafka_bodies_must_fit_a_task_record(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, str(16 << 20))
    load_settings()  # the embedded log takes it
    monkeypatch.setenv("NGPU_BUS", "kafka")
    with pytest.raises(SettingsError, match=variable):
        load_settings()
    monkeypatch.setenv(variable, str(8 << 20))
    load_settings()


def test_kafka_mode_builds_the_kafka_bus_from_its_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "NGPU_BUS": "kafka",
        "NGPU_KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092",
        "NGPU_BUS_PARTITIONS": "12",
        "NGPU_KAFKA_NAMESPACE": "staging.",
        "NGPU_KAFKA_REPLICATION_FACTOR": "3",
        "NGPU_KAFKA_PUBLISH_TIMEOUT_S": "2.5",
    }.items():
        monkeypatch.setenv(name, value)
    bus = bus_from_settings(load_settings())
    assert isinstance(bus, KafkaBus)
    assert bus.bootstrap == "kafka-1:9092,kafka-2:9092"
    assert (bus.partitions, bus.namespace) == (12, "staging.")
    assert (bus.replication_factor, bus.publish_timeout_s) == (3, 2.5)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NGPU_QUEUE_MAX_BYTES": "0"}, "NGPU_QUEUE_MAX_BYTES"),
        ({"NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE": "lots"}, "NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE"),
        ({"NGPU_QUEUE_MAX_BYTES": str(64 << 20)}, "NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE"),
        ({"NGPU_QUEUE_MAX_BYTES_PER_WORKSPACE": "4096"}, "NGPU_MAX_BODY_BYTES"),
    ],
)
def test_queue_caps_nest(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=named):
        load_settings()
    # A workspace's cap within the total, and a body the ingress takes within both: it starts.
    load_settings(queue_max_bytes=8192, queue_max_bytes_per_workspace=4096, max_body_bytes=4096)


def test_the_cli_stops_with_the_variable_named(tmp_path: Path) -> None:
    env = {**os.environ, "NGPU_BUS_PARTITIONS": "many"}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "events", "tail", "--no-follow",
         "--data-dir", str(tmp_path)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert "NGPU_BUS_PARTITIONS" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key, ("127.0.0.1",))
    return cert, key


def test_tls_files_make_the_ingress_serve_https(
    monkeypatch: pytest.MonkeyPatch, tls_pair: tuple[Path, Path]
) -> None:
    assert load_settings().url_scheme == "http"
    monkeypatch.setenv("NGPU_TLS_CERT_FILE", str(tls_pair[0]))
    monkeypatch.setenv("NGPU_TLS_KEY_FILE", str(tls_pair[1]))
    settings = load_settings()
    assert (settings.tls_cert_file, settings.tls_key_file) == tls_pair
    assert settings.url_scheme == "https"
    monkeypatch.setenv("NGPU_TLS_CERT_FILE", "")  # an empty variable is an unset one
    monkeypatch.setenv("NGPU_TLS_KEY_FILE", "")
    assert load_settings().url_scheme == "http"


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        ("cert", None, "NGPU_TLS_CERT_FILE and NGPU_TLS_KEY_FILE go together"),
        (None, "key", "NGPU_TLS_CERT_FILE and NGPU_TLS_KEY_FILE go together"),
        ("missing", "key", "cannot load"),
        ("cert", "missing", "cannot load"),
        ("cert", "other-key", "cannot load"),  # a key that is not the certificate's
        ("key", "key", "cannot load"),  # a key where the certificate belongs
        ("cert", "encrypted-key", "encrypted"),  # refused, never a password prompt
    ],
)
def test_tls_files_that_cannot_serve_stop_the_start(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tls_pair: tuple[Path, Path],
    cert: str | None,
    key: str | None,
    message: str,
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    write_self_signed(other / "cert.pem", other / "key.pem")
    subprocess.run(
        ["openssl", "pkey", "-in", str(tls_pair[1]), "-aes256", "-passout", "pass:secret",
         "-out", str(tmp_path / "encrypted.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    files = {
        "cert": tls_pair[0],
        "key": tls_pair[1],
        "missing": tmp_path / "missing.pem",
        "other-key": other / "key.pem",
        "encrypted-key": tmp_path / "encrypted.pem",
    }
    for variable, name in (("NGPU_TLS_CERT_FILE", cert), ("NGPU_TLS_KEY_FILE", key)):
        if name is not None:
            monkeypatch.setenv(variable, str(files[name]))
    with pytest.raises(SettingsError, match=message) as raised:
        load_settings()
    assert "NGPU_TLS_CERT_FILE" in str(raised.value)
