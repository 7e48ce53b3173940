"""Which roles a process may run: parsing `--roles`, refusing combinations that would
misbehave, and the projector's consumer group per data dir."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.certs import trusting, write_self_signed
from services.roles import (
    ALL_ROLES,
    RolesError,
    check_roles,
    parse_roles,
    projector_group,
)
from services.settings import Settings


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_roles_parse_from_a_comma_list() -> None:
    assert parse_roles("ingress, projector") == {"ingress", "projector"}
    assert parse_roles("dispatcher") == {"dispatcher"}
    assert parse_roles("ingress,scheduler,dispatcher,projector,webhooks") == ALL_ROLES


@pytest.mark.parametrize("text", ["", " , ", "ingress,gateway", "Ingress"])
def test_unknown_or_missing_roles_are_refused_by_name(text: str) -> None:
    with pytest.raises(RolesError, match="choose from dispatcher, ingress, projector"):
        parse_roles(text)


def test_the_embedded_log_cannot_be_split_across_processes(tmp_path: Path) -> None:
    with pytest.raises(RolesError, match="NGPU_BUS=kafka"):
        check_roles(_settings(tmp_path), frozenset({"dispatcher"}))
    check_roles(_settings(tmp_path), ALL_ROLES)


def test_an_ingress_on_chdb_needs_the_projector_beside_it(tmp_path: Path) -> None:
    kafka = _settings(tmp_path, bus="kafka", admin_token="a")
    with pytest.raises(RolesError, match="--roles ingress,projector"):
        check_roles(kafka, frozenset({"ingress"}))
    check_roles(kafka, frozenset({"ingress", "projector"}))
    server = _settings(tmp_path, bus="kafka", admin_token="a",
                       clickhouse_dsn="http://u:p@127.0.0.1:8123/ngpu")  # fmt: skip
    check_roles(server, frozenset({"ingress"}))


def test_webhooks_on_kafka_need_the_key_the_ingress_derives_secrets_from(
    tmp_path: Path,
) -> None:
    # A key generated into this process's data dir would sign with secrets no customer has.
    with pytest.raises(RolesError, match="NGPU_WEBHOOK_KEY"):
        check_roles(_settings(tmp_path, bus="kafka"), frozenset({"webhooks"}))
    check_roles(_settings(tmp_path, bus="kafka", webhook_key="k"), frozenset({"webhooks"}))
    check_roles(_settings(tmp_path, bus="kafka", admin_token="a"), frozenset({"webhooks"}))


@pytest.mark.parametrize("role", ["ingress", "dispatcher"])
def test_on_kafka_ingress_and_dispatcher_need_the_node_call_key_they_share(
    tmp_path: Path, role: str
) -> None:
    # A key generated into each process's data dir signs calls no node proxy accepts.
    roles = frozenset({role, "projector"})
    with pytest.raises(RolesError, match="NGPU_NODE_CALL_KEY"):
        check_roles(_settings(tmp_path, bus="kafka"), roles)
    check_roles(_settings(tmp_path, bus="kafka", node_call_key="k"), roles)
    check_roles(_settings(tmp_path, bus="kafka", admin_token="a"), roles)


def test_projectors_share_a_group_on_a_server_and_not_on_chdb(tmp_path: Path) -> None:
    server = "http://u:p@127.0.0.1:8123/ngpu"
    assert projector_group(_settings(tmp_path / "a", clickhouse_dsn=server)) == "projector"
    assert projector_group(_settings(tmp_path / "b", clickhouse_dsn=server)) == "projector"
    one = projector_group(_settings(tmp_path / "a"))
    assert one.startswith("projector-")
    assert one == projector_group(_settings(tmp_path / "a"))
    assert one != projector_group(_settings(tmp_path / "b"))
    shutil.rmtree(tmp_path / "a" / "clickhouse")  # a wiped store starts from the beginning
    assert projector_group(_settings(tmp_path / "a")) not in (one, "projector")


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "--data-dir", str(tmp_path), *args],
        env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_serve_says_when_kafka_cannot_be_reached(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    result = _serve(tmp_path, "--roles", "dispatcher", NGPU_BUS="kafka", NGPU_ADMIN_TOKEN="a",
                    NGPU_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ngpu serve: ") and f"127.0.0.1:{port}" in last
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--roles", "ingress,router"], {"NGPU_BUS": "kafka"}, "unknown role(s) router"),
        (["--roles", "dispatcher"], {}, "NGPU_BUS=kafka"),
        (["--roles", "ingress"], {"NGPU_BUS": "kafka"}, "--roles ingress,projector"),
        (
            ["--roles", "ingress,projector"],
            {"NGPU_BUS": "kafka", "NGPU_NODE_CALL_KEY": "k"},
            "NGPU_ADMIN_TOKEN and NGPU_NODE_JOIN_TOKEN are required",
        ),
    ],
)
def test_serve_refuses_before_starting_and_says_why(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = _serve(tmp_path, *args, **env)
    assert result.returncode == 2
    assert message in result.stderr


@contextlib.contextmanager
def _up_listening(tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`ngpu up` in a child process (with `env`), once it listens: (the process, the URL
    it says it listens on); killed if the test left it running."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up", "--port", str(port),
         "--data-dir", str(tmp_path)],
        env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = ""
        for line in process.stdout:  # hang guard: the test's own timeout
            if b"listening on" in line:
                url = line.decode().split("listening on", 1)[1].strip()
                break
        assert url.endswith(f"://127.0.0.1:{port}"), url
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_up_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with _up_listening(tmp_path) as (process, _):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_up_is_ready_once_every_role_has_caught_up(tmp_path: Path) -> None:
    with _up_listening(tmp_path) as (process, url):
        assert httpx.get(f"{url}/healthz").json() == {"ok": True}
        while (ready := httpx.get(f"{url}/readyz")).status_code == 503:
            assert ready.json()["ready"] is False and ready.json()["waiting_for"]
            time.sleep(0.05)
        assert (ready.status_code, ready.json()) == (200, {"ready": True})
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
        assert process.returncode == 0
        roles = "projector, directory, tasks, scheduler, dispatcher, webhooks"
        assert f"ready: caught up with the log ({roles})" in output


def test_up_serves_https_with_the_configured_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key, ("127.0.0.1",))
    tls = {"NGPU_TLS_CERT_FILE": str(cert), "NGPU_TLS_KEY_FILE": str(key)}
    with _up_listening(tmp_path / "data", **tls) as (process, url):
        assert url.startswith("https://")
        answer = httpx.get(f"{url}/healthz", verify=trusting(cert))
        assert answer.json() == {"ok": True}
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/healthz")  # the system's CAs do not know it
        with pytest.raises(httpx.TransportError):  # no plain HTTP beside it
            httpx.get(url.replace("https://", "http://") + "/healthz")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("given", ["NGPU_TLS_CERT_FILE", "NGPU_TLS_KEY_FILE"])
def test_up_refuses_half_a_tls_configuration(tmp_path: Path, given: str) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key, ("127.0.0.1",))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "up", "--port", str(_free_port()),
         "--data-dir", str(tmp_path / "data")],
        env={**clean, given: str(cert if given == "NGPU_TLS_CERT_FILE" else key)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "NGPU_TLS_CERT_FILE and NGPU_TLS_KEY_FILE go together" in result.stderr
    assert "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
