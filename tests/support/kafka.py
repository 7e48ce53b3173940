"""A real Kafka broker for tests: `compose/kafka/broker` in a temporary directory.

Set `NGPU_TEST_KAFKA_BOOTSTRAP=host:port` to use a broker that already runs instead
(it must be on loopback and allow topic creation). `SecureKafkaBroker` is always one of
its own: a SASL_SSL listener with a certificate made here.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "compose" / "kafka" / "broker"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class KafkaBroker:
    """A single-node KRaft broker whose data lives in `directory`; `None` when the
    broker is external (then it cannot be restarted by tests)."""

    bootstrap: str
    directory: Path | None

    @classmethod
    def start_in(cls, directory: Path) -> KafkaBroker:
        external = os.environ.get("NGPU_TEST_KAFKA_BOOTSTRAP")
        if external:
            return cls(external, None)
        out = subprocess.run(
            [str(SCRIPT), "start", str(directory), str(_free_port())],
            check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        return cls(out.stdout.strip().splitlines()[-1], directory)

    def stop(self) -> None:
        if self.directory is not None:
            subprocess.run([str(SCRIPT), "stop", str(self.directory)], check=True, timeout=60)

    def restart(self) -> None:
        """Start again after `stop()`, on the same data and port."""
        assert self.directory is not None, "an external broker cannot be restarted"
        subprocess.run([str(SCRIPT), "start", str(self.directory)], check=True, timeout=300)


# SASL users of `SecureKafkaBroker`: PLAIN users live in the listener's JAAS line, SCRAM
# users are created when the broker's storage is formatted.
PLAIN_USERS = {"alice": "alice-secret"}
SCRAM_USERS = {"bob": "bob-secret"}
_BROKER_USER = ("broker", "broker-secret")  # the broker's own, for its inter-broker listener


@dataclass(frozen=True)
class Pki:
    """PEM files of a test PKI (`make_pki`)."""

    ca_file: Path
    """The CA that signed the broker's certificate and the client's."""
    broker_cert_file: Path
    """For 127.0.0.1 and localhost."""
    broker_key_file: Path
    client_cert_file: Path
    client_key_file: Path
    stranger_cert_file: Path
    """A client certificate (with its key in the same file) signed by another CA."""


def make_pki(directory: Path) -> Pki:
    """A CA, a broker and a client certificate it signed, and a stranger's certificate
    another CA signed, in `directory`. Keys are unencrypted PKCS#8 (what Kafka reads)."""
    ca_key, other_key = _key(), _key()
    ca = _cert("ngpu test CA", ca_key, None)
    other_ca = _cert("another CA", other_key, None)
    broker_key, client_key, stranger_key = _key(), _key(), _key()
    broker = _cert("127.0.0.1", broker_key, (ca, ca_key), server=True)
    client = _cert("ngpu client", client_key, (ca, ca_key))
    stranger = _cert("stranger", stranger_key, (other_ca, other_key))
    pki = Pki(
        ca_file=directory / "ca.pem",
        broker_cert_file=directory / "broker.pem",
        broker_key_file=directory / "broker.key",
        client_cert_file=directory / "client.pem",
        client_key_file=directory / "client.key",
        stranger_cert_file=directory / "stranger.pem",
    )
    pki.ca_file.write_text(_pem(ca))
    pki.broker_cert_file.write_text(_pem(broker))
    pki.broker_key_file.write_text(_key_pem(broker_key))
    pki.client_cert_file.write_text(_pem(client))
    pki.client_key_file.write_text(_key_pem(client_key))
    pki.stranger_cert_file.write_text(_pem(stranger) + _key_pem(stranger_key))
    return pki


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
) -> x509.Certificate:
    """A certificate for `key`, signed by `issuer` (None: a self-signed CA)."""
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    )
    if issuer is None:
        usage = x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False,
        )  # fmt: skip
        builder = builder.add_extension(usage, critical=True)
    else:
        purposes = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            purposes.append(ExtendedKeyUsageOID.SERVER_AUTH)
            names: list[x509.GeneralName] = [
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]  # fmt: skip
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,  # what Kafka's PEM key store reads
        serialization.NoEncryption(),
    ).decode()


def _inline(pem: str) -> str:
    """A PEM block as one properties value (the `\\n` escapes become newlines)."""
    return pem.strip().replace("\n", "\\n")


def _jaas_plain() -> str:
    users = {_BROKER_USER[0]: _BROKER_USER[1], **PLAIN_USERS}
    accounts = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{_BROKER_USER[0]}" password="{_BROKER_USER[1]}" {accounts};'
    )


@dataclass
class SecureKafkaBroker(KafkaBroker):
    """A single-node KRaft broker whose one client listener is SASL_SSL: TLS with a
    certificate for 127.0.0.1 and localhost signed by `pki.ca_file` (client certificates
    are requested, and verified when one is given), SASL/PLAIN (`PLAIN_USERS`) and
    SCRAM-SHA-256 and -512 (`SCRAM_USERS`). The controller listener stays PLAINTEXT.
    Always a broker of its own (`NGPU_TEST_KAFKA_BOOTSTRAP` does not apply)."""

    pki: Pki

    @classmethod
    def start_in(cls, directory: Path) -> SecureKafkaBroker:
        directory.mkdir(parents=True, exist_ok=True)
        pki = make_pki(directory)
        listener = "listener.name.sasl_ssl"
        properties = {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.certificate.chain": _inline(pki.broker_cert_file.read_text()),
            "ssl.keystore.key": _inline(pki.broker_key_file.read_text()),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.certificates": _inline(pki.ca_file.read_text()),
            # A SASL_SSL listener takes ssl.client.auth only with the listener's prefix.
            f"{listener}.ssl.client.auth": "requested",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            f"{listener}.plain.sasl.jaas.config": _jaas_plain(),
            **{
                f"{listener}.{mechanism}.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                for mechanism in ("scram-sha-256", "scram-sha-512")
            },
        }  # fmt: skip
        (directory / "listener.properties").write_text(
            "".join(f"{key}={value}\n" for key, value in properties.items())
        )
        (directory / "scram").write_text(
            "".join(
                f"{mechanism}=[name={name},password={password}]\n"
                for name, password in SCRAM_USERS.items()
                for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            )
        )
        out = subprocess.run(
            [str(SCRIPT), "start", str(directory), str(_free_port()), "SASL_SSL"],
            check=True, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        return cls(out.stdout.strip().splitlines()[-1], directory, pki)
