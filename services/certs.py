"""TLS certificates: the node proxy's self-signed one and its pin, and the contexts that
serve and trust certificates.

The dispatcher-to-proxy hop is pinned, not CA-verified: each node agent has a self-signed
certificate (`proxy_certificate`), registers it, and the dispatcher accepts exactly that
certificate on that node's proxy (the SHA-256 of its DER, carried by each
`TaskDispatched`): a peer presenting any other certificate, or one that does not hold the
registered certificate's key (TLS proves that in the handshake), fails the call before
the request is sent. No CA and no host name are involved, so the certificate names
nothing, and dates do not matter to a pin.

Certificates are made with the `cryptography` package. The proxy's key stays on the
node: in the agent's work dir (owner-only), or only in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from events.errors import NgpuError

PROXY_COMMON_NAME = "ngpu-node-proxy"
VALID_DAYS = 3650
"""Validity of a made certificate. A pin is checked without dates, so this only bounds
what a client that verifies the chain (trusting the certificate as its CA) accepts."""
MAX_PEM_CHARS = 16_384
PROXY_CERT_FILE, PROXY_KEY_FILE = "proxy-cert.pem", "proxy-key.pem"
_BEGIN, _END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"


_SIGNING_ONLY = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, content_commitment=False,
    key_encipherment=False, data_encipherment=False, key_agreement=False,
    crl_sign=False, encipher_only=False, decipher_only=False,
)  # fmt: skip


class CertificateError(NgpuError):
    """A certificate could not be made or read; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ProxyCertificate:
    """A node proxy's certificate: `pem` (what the agent registers), `sha256` (the pin)
    and the server `context` holding its key."""

    pem: str
    sha256: str
    context: ssl.SSLContext = field(repr=False)


def certificate_der(pem: str) -> bytes:
    """The DER of one PEM certificate. Raises `ValueError` for anything else (several
    certificates, a key, garbage, a malformed certificate)."""
    text = pem.strip()
    if len(text) > MAX_PEM_CHARS:
        raise ValueError(f"longer than {MAX_PEM_CHARS} characters")
    if text.count("-----BEGIN") != 1 or not (text.startswith(_BEGIN) and text.endswith(_END)):
        raise ValueError("must be exactly one PEM certificate (-----BEGIN CERTIFICATE-----)")
    der = ssl.PEM_cert_to_DER_cert(text)
    try:  # parsed as X.509 by OpenSSL: a PEM of anything else is refused here
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=der)
    except ssl.SSLError as exc:
        raise ValueError(f"not an X.509 certificate: {exc.reason or exc}") from exc
    return der


def certificate_sha256(pem: str) -> str:
    """The pin of a PEM certificate: the hex SHA-256 of its DER (`ValueError` as
    `certificate_der`)."""
    return hashlib.sha256(certificate_der(pem)).hexdigest()


def write_self_signed(
    cert_file: Path, key_file: Path, names: Sequence[str] = (), *,
    common_name: str = PROXY_COMMON_NAME,
) -> None:  # fmt: skip
    """Write an ECDSA P-256 self-signed certificate to `cert_file` and its key to
    `key_file` (mode 0600). `names` (IP addresses or DNS names) go in its subjectAltName.
    It is its own CA (`basicConstraints CA:TRUE`), so a client may trust it as its only
    CA as well as pin it. Raises `CertificateError`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # a little clock skew
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_SIGNING_ONLY, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if names:
        alt = [x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n)
               for n in names]  # fmt: skip
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    certificate = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        key_file.unlink(missing_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:  # owner-only before a byte is written
            out.write(key_pem)
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    except OSError as exc:
        raise CertificateError(f"cannot write the certificate to {cert_file}: {exc}") from exc


def proxy_certificate(directory: Path | None = None) -> ProxyCertificate:
    """The certificate of a node's proxies, its key loaded into a server context. With
    `directory` (the agent's work dir), kept there (`PROXY_CERT_FILE`, `PROXY_KEY_FILE`,
    the key owner-only) and reused by the next start, so an agent that resumes its
    registration serves the certificate it registered; made anew when missing or
    unreadable. Without, made in a private temporary directory that is then deleted: the
    key is held in memory only. Raises `CertificateError`."""
    if directory is not None:
        cert, key = directory / PROXY_CERT_FILE, directory / PROXY_KEY_FILE
        with contextlib.suppress(CertificateError, OSError, ValueError):
            if cert.exists() and key.exists():
                return _loaded(cert, key)
        write_self_signed(cert, key)
        return _loaded(cert, key)
    with tempfile.TemporaryDirectory(prefix="ngpu-proxy-tls-") as private:  # mode 0700
        return _loaded(Path(private) / "cert.pem", Path(private) / "key.pem", make=True)


def _loaded(cert: Path, key: Path, *, make: bool = False) -> ProxyCertificate:
    if make:
        write_self_signed(cert, key)
    pem = cert.read_text()
    return ProxyCertificate(pem, certificate_sha256(pem), server_context(cert, key))


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context presenting `cert_file` (raises `CertificateError`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot load {cert_file} with {key_file}: {exc}") from exc
    return context


def trusting(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts the certificates in `ca_file` only (not the
    system's CAs): a CA, or the server's own certificate (any certificate in the file is
    a trust anchor, as Python 3.13 does by default). Host names are checked. Raises
    `CertificateError`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, checks host names
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    try:
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot read the CA file {ca_file}: {exc}") from exc
    return context


def _no_password() -> bytes:
    # Called only for an encrypted key: fail instead of prompting on the terminal.
    raise ValueError("the key is encrypted; give an unencrypted key")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
