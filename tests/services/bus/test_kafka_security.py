"""Kafka's TLS and SASL settings: what combinations are refused at load, and the client
options they become, for aiokafka and for faust alike. (On a real SASL_SSL broker:
tests/e2e/test_kafka_sasl_ssl.py.)"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from services.bus import BusError, KafkaBus, bus_from_settings
from services.bus.security import KafkaSecurity
from services.scheduler.distributed.app import broker_credentials
from services.settings import SettingsError, load_settings
from tests.support.kafka import Pki, make_pki

PASSWORD = "s3cret-never-shown"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("NGPU_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    yield make_pki(tmp_path_factory.mktemp("pki"))


def _sasl_ssl(pki: Pki, **more: object) -> dict[str, object]:
    return {
        "bus": "kafka", "kafka_security_protocol": "SASL_SSL", "kafka_ssl_ca_file": pki.ca_file,
        "kafka_sasl_mechanism": "SCRAM-SHA-256", "kafka_sasl_username": "bob",
        "kafka_sasl_password": PASSWORD, **more,
    }  # fmt: skip


def test_the_default_is_plaintext() -> None:
    settings = load_settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    security = KafkaSecurity.from_settings(settings)
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(security) is None


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"kafka_security_protocol": "SASL_SSL"},
         "NGPU_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs NGPU_KAFKA_SASL_MECHANISM, "
         "NGPU_KAFKA_SASL_USERNAME, NGPU_KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN",
          "kafka_sasl_password": PASSWORD},
         "NGPU_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs NGPU_KAFKA_SASL_USERNAME "),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN",
          "kafka_sasl_username": "alice", "kafka_sasl_password": ""},
         "needs NGPU_KAFKA_SASL_PASSWORD"),
        ({"kafka_ssl_ca_file": "/etc/ca.pem"},
         "NGPU_KAFKA_SSL_CA_FILE set, but NGPU_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use "
         "TLS (use SSL or SASL_SSL)"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN",
          "kafka_sasl_username": "alice", "kafka_sasl_password": PASSWORD,
          "kafka_ssl_cert_file": "/etc/client.pem"},
         "NGPU_KAFKA_SSL_CERT_FILE set, but NGPU_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does "
         "not use TLS (use SASL_SSL)"),
        ({"kafka_security_protocol": "SSL", "kafka_sasl_username": "alice",
          "kafka_sasl_password": PASSWORD},
         "NGPU_KAFKA_SASL_USERNAME, NGPU_KAFKA_SASL_PASSWORD set, but "
         "NGPU_KAFKA_SECURITY_PROTOCOL=SSL does not authenticate with SASL (use SASL_SSL)"),
        ({"kafka_sasl_mechanism": "PLAIN"},
         "does not authenticate with SASL (use SASL_SSL or SASL_PLAINTEXT)"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_key_file": "/etc/client.key"},
         "NGPU_KAFKA_SSL_KEY_FILE needs NGPU_KAFKA_SSL_CERT_FILE"),
    ],
)  # fmt: skip
def test_combinations_that_cannot_work_are_refused_by_name(
    settings: dict[str, object], expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**settings)
    assert expected in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("NGPU_KAFKA_SECURITY_PROTOCOL", "TLS"), ("NGPU_KAFKA_SASL_MECHANISM", "GSSAPI")],
)
def test_unknown_words_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_the_environment_may_spell_them_in_any_case(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    monkeypatch.setenv("NGPU_KAFKA_SECURITY_PROTOCOL", " sasl_ssl ")
    monkeypatch.setenv("NGPU_KAFKA_SASL_MECHANISM", "scram-sha-512")
    monkeypatch.setenv("NGPU_KAFKA_SASL_USERNAME", "bob")
    monkeypatch.setenv("NGPU_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("NGPU_KAFKA_SSL_CA_FILE", str(pki.ca_file))
    monkeypatch.setenv("NGPU_KAFKA_SSL_CERT_FILE", "")  # empty: unset
    settings = load_settings()
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka_ssl_cert_file is None
    assert PASSWORD not in repr(settings) + str(settings)


def test_files_are_loaded_at_start_on_kafka(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(SettingsError) as caught:
        load_settings(**_sasl_ssl(pki, kafka_ssl_ca_file=missing))
    assert f"NGPU_KAFKA_SSL_CA_FILE: cannot load CA certificates from {missing}" in str(
        caught.value
    )
    load_settings(**_sasl_ssl(pki, kafka_ssl_ca_file=missing, bus="embedded"))  # not used
    with pytest.raises(SettingsError, match="NGPU_KAFKA_SSL_CERT_FILE, NGPU_KAFKA_SSL_KEY_FILE"):
        load_settings(**_sasl_ssl(  # a key that is not the certificate's
            pki, kafka_ssl_cert_file=pki.client_cert_file, kafka_ssl_key_file=pki.broker_key_file,
        ))  # fmt: skip


def test_an_encrypted_key_needs_its_password(tmp_path: Path, pki: Pki) -> None:
    key = serialization.load_pem_private_key(pki.client_key_file.read_bytes(), None)
    encrypted = tmp_path / "client-encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key-password"),
    ))  # fmt: skip
    mtls = {"kafka_ssl_cert_file": pki.client_cert_file, "kafka_ssl_key_file": encrypted}
    with pytest.raises(SettingsError, match="NGPU_KAFKA_SSL_KEY_PASSWORD"):
        load_settings(**_sasl_ssl(pki, **mtls))  # fails, rather than prompting on a terminal
    settings = load_settings(**_sasl_ssl(pki, **mtls, kafka_ssl_key_password="key-password"))
    assert KafkaSecurity.from_settings(settings).ssl_context() is not None


def test_sasl_ssl_becomes_aiokafkas_options(pki: Pki) -> None:
    security = KafkaSecurity.from_settings(load_settings(**_sasl_ssl(pki)))
    options = security.client_options()
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "bob", "sasl_plain_password": PASSWORD,
    }  # fmt: skip
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert PASSWORD not in repr(security)


@pytest.mark.parametrize(
    "settings",
    [
        {"kafka_security_protocol": "SSL"},
        {"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "client_cert_file",
         "kafka_ssl_key_file": "client_key_file"},
        {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN",
         "kafka_sasl_username": "alice", "kafka_sasl_password": PASSWORD},
        {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
         "kafka_sasl_username": "bob", "kafka_sasl_password": PASSWORD},
    ],
)  # fmt: skip
def test_faust_gets_the_same_options_as_the_bus(pki: Pki, settings: dict[str, object]) -> None:
    files = {"client_cert_file": pki.client_cert_file, "client_key_file": pki.client_key_file}
    settings = {k: files.get(str(v), v) for k, v in settings.items()}
    if settings["kafka_security_protocol"] in ("SSL", "SASL_SSL"):
        settings["kafka_ssl_ca_file"] = pki.ca_file
    security = KafkaSecurity.from_settings(load_settings(bus="kafka", **settings))
    context = security.ssl_context()
    ours = security.client_options(context)
    faust = dict(credentials_to_aiokafka_auth(broker_credentials(security)))
    faust_context = faust.pop("ssl_context", None)  # None is aiokafka's default
    assert ours.pop("ssl_context", None) is context
    assert isinstance(faust_context, ssl.SSLContext) == (context is not None)
    assert faust == ours


def test_the_bus_refuses_a_file_gone_since_the_settings_loaded(tmp_path: Path, pki: Pki) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca_file.read_bytes())
    settings = load_settings(**_sasl_ssl(pki, kafka_ssl_ca_file=ca))
    assert isinstance(bus_from_settings(settings), KafkaBus)
    ca.unlink()
    with pytest.raises(BusError, match="NGPU_KAFKA_SSL_CA_FILE"):
        bus_from_settings(settings)
