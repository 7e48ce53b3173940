"""Kafka over SASL_SSL, on a real broker whose one client listener is SASL_SSL (a
certificate made for the test, SASL/PLAIN and SCRAM users): the bus publishes and
consumes, every role of `ngpu serve` runs (the faust scheduler too), and a wrong
password, a missing CA or a stranger's client certificate fail with a message that says
so, without ever showing the password."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from events import topics
from services.bus import BusError, BusUnavailable, KafkaBus, Record
from services.bus.security import KafkaSecurity, SaslMechanism
from tests.e2e.cluster import Cluster, cluster_env
from tests.support.kafka import PLAIN_USERS, SCRAM_USERS, SecureKafkaBroker

WRONG_PASSWORD = "not-the-password-42"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafkaBroker]:
    started = time.monotonic()
    instance = SecureKafkaBroker.start_in(tmp_path_factory.mktemp("kafka-sasl-ssl"))
    print(f"the SASL_SSL broker started in {time.monotonic() - started:.1f} s")
    try:
        yield instance
    finally:
        instance.stop()


def _security(broker: SecureKafkaBroker, **changes: object) -> KafkaSecurity:
    """alice over SASL/PLAIN, trusting the broker's CA, unless `changes` say otherwise."""
    fields: dict[str, object] = {
        "protocol": "SASL_SSL", "ca_file": broker.pki.ca_file, "sasl_mechanism": "PLAIN",
        "username": "alice", "password": SecretStr(PLAIN_USERS["alice"]), **changes,
    }  # fmt: skip
    return KafkaSecurity(**fields)  # type: ignore[arg-type]


def _bus(broker: SecureKafkaBroker, security: KafkaSecurity) -> KafkaBus:
    return KafkaBus(
        broker.bootstrap, partitions=2, namespace=f"{uuid.uuid4().hex}.", security=security,
        publish_timeout_s=10,
    )  # fmt: skip


async def _fetch_one(bus: KafkaBus, group: str | None) -> Record:
    async with bus.consumer([topics.TASKS], group=group) as consumer:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            records = await consumer.fetch(timeout_s=1)
            if records:
                if group is not None:
                    await consumer.commit()
                return records[0]
    raise AssertionError("nothing consumed within 30 s")


async def _refusal(broker: SecureKafkaBroker, security: KafkaSecurity) -> str:
    """The message of the start that fails; it must not be an outage (retried as one)."""
    with pytest.raises(BusError) as caught:
        async with _bus(broker, security):
            pass
    assert not isinstance(caught.value, BusUnavailable), caught.value
    message = str(caught.value)
    assert WRONG_PASSWORD not in message
    return message


@pytest.mark.parametrize(
    ("mechanism", "user", "password"),
    [
        ("PLAIN", "alice", PLAIN_USERS["alice"]),
        ("SCRAM-SHA-256", "bob", SCRAM_USERS["bob"]),
        ("SCRAM-SHA-512", "bob", SCRAM_USERS["bob"]),
    ],
)
async def test_the_bus_publishes_and_consumes_over_sasl_ssl(
    broker: SecureKafkaBroker, mechanism: SaslMechanism, user: str, password: str
) -> None:
    security = _security(
        broker, sasl_mechanism=mechanism, username=user, password=SecretStr(password)
    )
    async with _bus(broker, security) as bus:
        sent = await bus.publish(topics.TASKS, "task-1", b"over TLS")
        got = await _fetch_one(bus, group="readers")
    assert (got.key, got.value, got.offset) == ("task-1", b"over TLS", sent.offset)


async def test_a_client_certificate_is_presented_and_verified(broker: SecureKafkaBroker) -> None:
    # The listener requests client certificates: one its CA signed is taken, a stranger's
    # is refused in the handshake.
    pki = broker.pki
    mutual = _security(broker, cert_file=pki.client_cert_file, key_file=pki.client_key_file)
    async with _bus(broker, mutual) as bus:
        await bus.publish(topics.TASKS, "k", b"v")
        assert (await _fetch_one(bus, group=None)).value == b"v"
    message = await _refusal(broker, _security(broker, cert_file=pki.stranger_cert_file))
    assert f"TLS with {broker.bootstrap} failed" in message
    assert "does the broker trust the CA of NGPU_KAFKA_SSL_CERT_FILE?" in message


async def test_a_wrong_password_is_refused_with_a_clear_error(broker: SecureKafkaBroker) -> None:
    message = await _refusal(broker, _security(broker, password=SecretStr(WRONG_PASSWORD)))
    assert f"{broker.bootstrap} refused the SASL authentication (SASL_SSL, PLAIN as 'alice')" in (
        message
    )
    assert "Invalid username or password" in message
    scram = _security(
        broker, sasl_mechanism="SCRAM-SHA-512", username="bob",
        password=SecretStr(WRONG_PASSWORD),
    )  # fmt: skip
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in await _refusal(broker, scram)


async def test_a_client_without_the_ca_is_refused_with_a_clear_error(
    broker: SecureKafkaBroker,
) -> None:
    message = await _refusal(broker, _security(broker, ca_file=None))  # the system's CAs
    assert f"the TLS certificate of {broker.bootstrap} is not trusted" in message
    assert "NGPU_KAFKA_SSL_CA_FILE" in message


async def test_a_client_of_the_wrong_protocol_is_told_so(broker: SecureKafkaBroker) -> None:
    plaintext = await _refusal(broker, KafkaSecurity())
    assert "answered with TLS, which NGPU_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not" in plaintext
    tls_only = await _refusal(broker, KafkaSecurity(protocol="SSL", ca_file=broker.pki.ca_file))
    assert "does its listener require SASL" in tls_only


def _env(broker: SecureKafkaBroker, password: str, **extra: str) -> dict[str, str]:
    return cluster_env(
        broker.bootstrap, NGPU_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        NGPU_KAFKA_SSL_CA_FILE=str(broker.pki.ca_file), NGPU_KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
        NGPU_KAFKA_SASL_USERNAME="bob", NGPU_KAFKA_SASL_PASSWORD=password, **extra,
    )  # fmt: skip


def test_every_role_runs_over_sasl_ssl(tmp_path: Path, broker: SecureKafkaBroker) -> None:
    # One `ngpu serve` process with every role (the scheduler is the faust app, which
    # elects itself over the same listener), a node agent, a synchronous call.
    cluster = Cluster(tmp_path, _env(broker, SCRAM_USERS["bob"]), one_process=True)
    try:
        workspace_id = cluster.start_demo()
        headers = {"Authorization": f"Bearer {workspace_id}"}
        with httpx.Client(base_url=cluster.url, headers=headers, timeout=60) as http:
            answer = http.post("/user/echo", json={"data": "over SASL_SSL"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"] == "over SASL_SSL"
    finally:
        cluster.stop()
    log = (tmp_path / "ingress.log").read_text(errors="replace")
    assert "scheduler: leading" in log
    for path in tmp_path.rglob("*.log"):
        assert SCRAM_USERS["bob"] not in path.read_text(errors="replace"), path


def test_ngpu_serve_with_a_wrong_password_says_why(
    tmp_path: Path, broker: SecureKafkaBroker
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "--roles", "dispatcher",
         "--data-dir", str(tmp_path)],
        env=_env(broker, WRONG_PASSWORD), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "ngpu serve: connecting to Kafka at" in done.stderr
    assert "refused the SASL authentication (SASL_SSL, SCRAM-SHA-256 as 'bob')" in done.stderr
    assert WRONG_PASSWORD not in done.stdout + done.stderr
