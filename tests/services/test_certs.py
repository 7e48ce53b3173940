"""Certificates: the node proxy's (made, kept in the work dir, pinned by its SHA-256), what
a registration may carry, and the contexts that trust a CA file."""

from __future__ import annotations

import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from services.certs import (
    PROXY_CERT_FILE,
    PROXY_KEY_FILE,
    CertificateError,
    certificate_der,
    certificate_sha256,
    proxy_certificate,
    trusting,
    write_self_signed,
)


def test_the_pin_is_the_sha256_openssl_reports(tmp_path: Path) -> None:
    made = proxy_certificate()
    (tmp_path / "cert.pem").write_text(made.pem)
    out = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "cert.pem"), "-noout", "-fingerprint",
         "-sha256"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert made.sha256 == out.strip().split("=", 1)[1].replace(":", "").lower()
    assert certificate_sha256(made.pem) == made.sha256
    assert made.sha256 != proxy_certificate().sha256  # a new key each time


def test_the_work_dir_keeps_the_certificate_across_starts(tmp_path: Path) -> None:
    # An agent that resumes its registration must serve the certificate it registered.
    first = proxy_certificate(tmp_path)
    assert proxy_certificate(tmp_path).sha256 == first.sha256
    assert stat.S_IMODE((tmp_path / PROXY_KEY_FILE).stat().st_mode) == 0o600
    (tmp_path / PROXY_KEY_FILE).write_text("not a key")  # unreadable: made anew
    renewed = proxy_certificate(tmp_path)
    assert renewed.sha256 != first.sha256
    assert certificate_sha256((tmp_path / PROXY_CERT_FILE).read_text()) == renewed.sha256


def test_without_a_work_dir_nothing_is_left_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where it is made
    proxy_certificate()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----\n" + "A" * 20_000 + "\n-----END CERTIFICATE-----",
    ],
    ids=["empty", "text", "not-x509", "too-long"],
)
def test_anything_but_one_certificate_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        certificate_der(text)


def test_a_chain_or_a_key_is_refused(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key)
    with pytest.raises(ValueError, match="exactly one"):
        certificate_der(cert.read_text() * 2)
    with pytest.raises(ValueError, match="exactly one"):
        certificate_der(key.read_text())


def test_a_ca_file_must_be_readable_certificates(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match=r"missing\.pem"):
        trusting(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(CertificateError, match=r"junk\.pem"):
        trusting(tmp_path / "junk.pem")
    write_self_signed(tmp_path / "cert.pem", tmp_path / "key.pem")
    assert trusting(tmp_path / "cert.pem").get_ca_certs()  # only what the file holds
