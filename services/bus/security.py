"""How the Kafka clients connect: TLS and SASL, from the `NGPU_KAFKA_*` settings.

`KafkaSecurity.client_options()` is the one place that turns them into the keyword
arguments of aiokafka's clients (`security_protocol`, `ssl_context`, `sasl_*`); the bus's
admin client, producer and consumers take them, and the scheduler's faust app takes the
same context and credentials as its `broker_credentials`. The password is a `SecretStr`
until it is handed to aiokafka: it appears in no message and no log line of ours.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import BrokerResponseError, KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import SecretStr

if TYPE_CHECKING:
    from services.settings import Settings

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SASL_MECHANISMS: tuple[str, ...] = get_args(SaslMechanism)


class KafkaSecurityError(ValueError):
    """The TLS or SASL settings do not fit together, or a file they name cannot be used;
    the message names the variables."""


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """The security of every connection to the Kafka cluster (PLAINTEXT by default)."""

    protocol: SecurityProtocol = "PLAINTEXT"
    ca_file: Path | None = None
    """PEM file of the CAs that sign the brokers' certificates; unset: the system's."""
    cert_file: Path | None = None
    """PEM client certificate (mutual TLS), with its chain and, lacking `key_file`, its key."""
    key_file: Path | None = None
    key_password: SecretStr | None = None
    sasl_mechanism: SaslMechanism | None = None
    username: str | None = None
    password: SecretStr | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        return cls(
            protocol=settings.kafka_security_protocol,
            ca_file=settings.kafka_ssl_ca_file,
            cert_file=settings.kafka_ssl_cert_file,
            key_file=settings.kafka_ssl_key_file,
            key_password=settings.kafka_ssl_key_password,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
        )

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def problems(self) -> list[str]:
        """What does not fit together, one sentence each (empty when all is well). Files
        are not read here: `ssl_context` does."""
        found = []
        protocol = f"NGPU_KAFKA_SECURITY_PROTOCOL={self.protocol}"
        tls_set = [
            f"NGPU_KAFKA_SSL_{name}"
            for name, value in (
                ("CA_FILE", self.ca_file), ("CERT_FILE", self.cert_file),
                ("KEY_FILE", self.key_file), ("KEY_PASSWORD", self.key_password),
            )
            if value is not None
        ]  # fmt: skip
        sasl_set = [
            f"NGPU_KAFKA_SASL_{name}"
            for name, value in (
                ("MECHANISM", self.sasl_mechanism), ("USERNAME", self.username),
                ("PASSWORD", self.password),
            )
            if value is not None
        ]  # fmt: skip
        if tls_set and not self.uses_tls:
            with_sasl = "SASL_SSL" if self.uses_sasl else "SSL or SASL_SSL"
            found.append(
                f"{', '.join(tls_set)} set, but {protocol} does not use TLS (use {with_sasl})"
            )
        if self.key_file is not None and self.cert_file is None:
            found.append(
                "NGPU_KAFKA_SSL_KEY_FILE needs NGPU_KAFKA_SSL_CERT_FILE (the client "
                "certificate the key belongs to)"
            )
        if self.uses_sasl:
            password = self.password.get_secret_value() if self.password else ""
            missing = [
                f"NGPU_KAFKA_SASL_{name}"
                for name, value in (
                    ("MECHANISM", self.sasl_mechanism), ("USERNAME", self.username),
                    ("PASSWORD", password),
                )
                if not value
            ]  # fmt: skip
            if missing:
                mechanisms = ", ".join(SASL_MECHANISMS)
                found.append(f"{protocol} needs {', '.join(missing)} (mechanisms: {mechanisms})")
        elif sasl_set:
            with_tls = "SASL_SSL" if self.uses_tls else "SASL_SSL or SASL_PLAINTEXT"
            found.append(
                f"{', '.join(sasl_set)} set, but {protocol} does not authenticate with SASL "
                f"(use {with_tls})"
            )
        return found

    def check(self) -> None:
        """Raise `KafkaSecurityError` naming every problem of `problems()`."""
        found = self.problems()
        if found:
            raise KafkaSecurityError("; ".join(found))

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context that verifies the brokers' certificates and host names (None
        without TLS). `KafkaSecurityError`, naming the variable, when a file cannot be
        loaded."""
        if not self.uses_tls:
            return None
        try:
            context: ssl.SSLContext = create_ssl_context(cafile=self.ca_file)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise KafkaSecurityError(
                f"NGPU_KAFKA_SSL_CA_FILE: cannot load CA certificates from {self.ca_file}: "
                f"{_reason(exc)}"
            ) from exc
        if self.cert_file is not None:
            key_password = self.key_password

            def password() -> bytes:
                # Never OpenSSL's own prompt on the terminal: an encrypted key without a
                # password fails to load instead.
                return key_password.get_secret_value().encode() if key_password else b""

            try:
                context.load_cert_chain(self.cert_file, self.key_file, password=password)
            except (OSError, ValueError) as exc:
                names = "NGPU_KAFKA_SSL_CERT_FILE" + (
                    ", NGPU_KAFKA_SSL_KEY_FILE" if self.key_file else ""
                )
                hint = (
                    "" if key_password else " (an encrypted key needs NGPU_KAFKA_SSL_KEY_PASSWORD)"
                )
                raise KafkaSecurityError(
                    f"{names}: cannot load the client certificate {self.cert_file} and its "
                    f"key {self.key_file or '(in the same file)'}: {_reason(exc)}{hint}"
                ) from exc
        return context

    def client_options(self, context: ssl.SSLContext | None = None) -> dict[str, Any]:
        """The keyword arguments of aiokafka's producer, consumer, admin client and
        connections for this security (`context`: the one `ssl_context()` made, to share
        it; made here when not given). The password is in clear in them: never log them."""
        self.check()
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = context or self.ssl_context()
        if self.uses_sasl:
            assert self.password is not None  # `check` made sure
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password.get_secret_value(),
            )
        return options

    def describe(self) -> str:
        """For messages: the protocol and, with SASL, who authenticates how."""
        if self.uses_sasl:
            return f"{self.protocol}, {self.sasl_mechanism} as {self.username!r}"
        return self.protocol


async def why_refused(
    bootstrap: str,
    security: KafkaSecurity,
    options: Mapping[str, Any],
    request_timeout_ms: int,
) -> str | None:
    """Why the bootstrap servers refuse a client with `security` (its `options`), when it
    is TLS or SASL, else None. aiokafka's bootstrap error only says that it could not
    connect (the cause goes to its log): this makes one connection to each server, as
    aiokafka's clients do, until one tells."""
    for host, port, _ in collect_hosts(bootstrap, randomize=False):
        where = f"{host}:{port}"
        try:
            connection = await create_conn(
                host, port, request_timeout_ms=request_timeout_ms, **options
            )
        except ssl.SSLCertVerificationError as exc:
            return (
                f"the TLS certificate of {where} is not trusted ({exc.verify_message}); "
                "NGPU_KAFKA_SSL_CA_FILE must name the CA that signed the brokers' "
                "certificates, for their host names"
            )
        except ssl.SSLError as exc:
            return (
                f"TLS with {where} failed: {exc} (does the listener use TLS, as "
                f"NGPU_KAFKA_SECURITY_PROTOCOL={security.protocol} does?)"
            )
        except BrokerResponseError as exc:  # a refusal in the SASL exchange
            return f"{where} refused the SASL authentication ({security.describe()}): {exc}"
        except KafkaConnectionError as exc:  # closed after the handshake
            refusal = _closed_because(where, security, exc.__cause__)
            if refusal is not None:
                return refusal
            continue
        except (OSError, TimeoutError, KafkaError):
            continue  # not reachable, or no reason given: the original error stands
        try:
            await connection.send(MetadataRequest([]))
        except KafkaConnectionError:
            if not security.uses_sasl:  # it answered, but will say no more before a login
                return (
                    f"{where} closed the connection at the first request: does its listener "
                    f"require SASL, which NGPU_KAFKA_SECURITY_PROTOCOL={security.protocol} "
                    "does not do (SASL_SSL or SASL_PLAINTEXT does)?"
                )
        except (OSError, TimeoutError, KafkaError):
            pass
        finally:
            connection.close()
    return None


def _closed_because(where: str, security: KafkaSecurity, cause: BaseException | None) -> str | None:
    if isinstance(cause, ssl.SSLError):  # TLS 1.3: the server's verdict on our certificate
        hint = (
            "does the broker trust the CA of NGPU_KAFKA_SSL_CERT_FILE?"
            if security.cert_file
            else "does the broker require a client certificate (NGPU_KAFKA_SSL_CERT_FILE)?"
        )
        return f"TLS with {where} failed: {cause} ({hint})"
    if not security.uses_tls and _tls_record(cause):
        return (
            f"{where} answered with TLS, which NGPU_KAFKA_SECURITY_PROTOCOL="
            f"{security.protocol} does not speak (SSL or SASL_SSL does)"
        )
    return None


def _tls_record(cause: BaseException | None) -> bool:
    """Whether a connection broke off on a TLS record where a Kafka response was due: the
    size aiokafka read was a TLS record header (an alert or a handshake, version 3.x)."""
    if not isinstance(cause, asyncio.IncompleteReadError):
        return False
    if cause.expected is None or not 0 <= cause.expected < 1 << 32:
        return False
    header = cause.expected.to_bytes(4, "big")
    return header[0] in (0x15, 0x16) and header[1] == 3


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.strerror:
        return exc.strerror  # without the file name, which the message gives
    return str(exc)
