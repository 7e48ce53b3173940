"""The pure parts the runtimes share: ports and environment, logs, status reports."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from events import DeploymentFailed, DeploymentReady, DeploymentStarting, DeploymentStopped
from services.nodeagent.runtimes import (
    StatusReport,
    deployment_env,
    describe_exit,
    health_url,
    log_path,
    pick_free_ports,
    tail_lines,
)
from services.nodeagent.runtimes.logs import append_marker, rotate_if_large
from services.nodeagent.runtimes.ports import host_port_map
from tests.services.nodeagent.helpers import deployment


def test_free_ports_are_distinct_bindable_and_not_excluded() -> None:
    first = pick_free_ports(3)
    again = pick_free_ports(3, exclude=first)

    assert len(set(first)) == 3
    assert not set(first) & set(again)
    for port in first:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_host_port_map_keys_are_container_ports_as_strings() -> None:
    assert host_port_map((8080, 9090), (41234, 41235)) == {"8080": 41234, "9090": 41235}


@pytest.mark.parametrize(
    ("ports", "env", "listen", "expected"),
    [
        (
            (8080,),
            {},
            {"8080": 41000},
            {"PORT": "41000", "NGPU_PORT_8080": "41000"},
        ),
        (
            (7860, 8080),
            {"MODEL": "sdxl", "PORT": "1", "NGPU_NODE_ID": "forged"},
            {"7860": 7860, "8080": 8080},
            {"MODEL": "sdxl", "PORT": "7860", "NGPU_PORT_7860": "7860", "NGPU_PORT_8080": "8080"},
        ),
    ],
)
def test_deployment_env_sets_ports_and_ids_over_the_spec_env(
    ports: tuple[int, ...], env: dict[str, str], listen: dict[str, int], expected: dict[str, str]
) -> None:
    ids = {"NGPU_DEPLOYMENT_ID": "dep-1", "NGPU_NODE_ID": "node-1"}
    assert deployment_env(deployment(ports=ports, env=env), listen) == expected | ids


@pytest.mark.parametrize(
    ("bind_host", "port", "path", "url"),
    [
        ("127.0.0.1", 4100, "/health", "http://127.0.0.1:4100/health"),
        ("0.0.0.0", 4100, "/healthz", "http://127.0.0.1:4100/healthz"),
        ("::", 4100, "/", "http://127.0.0.1:4100/"),
        ("::1", 4100, "/h?x=1", "http://[::1]:4100/h?x=1"),
        ("10.1.2.3", 80, "/health", "http://10.1.2.3:80/health"),
    ],
)
def test_health_url(bind_host: str, port: int, path: str, url: str) -> None:
    assert health_url(bind_host, port, path) == url


@pytest.mark.parametrize(
    ("deployment_id", "name"),
    [
        ("dep-1", "dep-1.log"),
        ("ws_1.rep-2", "ws_1.rep-2.log"),
        ("../../etc/passwd", "_.._etc_passwd.log"),
        ("..", "_.log"),
        ("a b/c", "a_b_c.log"),
    ],
)
def test_log_path_stays_in_the_log_dir(tmp_path: Path, deployment_id: str, name: str) -> None:
    path = log_path(tmp_path, deployment_id)
    assert path == tmp_path / name
    assert path.resolve().parent == tmp_path.resolve()


def test_tail_lines_reads_the_end_of_a_large_log(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(50_000)) + b"bad \xff byte\n")

    assert tail_lines(log, 3) == ("line 49998", "line 49999", "bad \ufffd byte")
    assert tail_lines(log, 0) == ()
    assert tail_lines(tmp_path / "missing.log", 5) == ()
    assert len(tail_lines(log, 100_000)) < 50_000  # bounded by the bytes read


def test_markers_are_appended_and_large_logs_rotated(tmp_path: Path) -> None:
    log = tmp_path / "d.log"
    append_marker(log, "start attempt 1")
    assert tail_lines(log, 1)[0].endswith("] start attempt 1")
    assert tail_lines(log, 1)[0].startswith("[ngpu 20")

    rotate_if_large(log, max_bytes=10_000)
    assert log.exists()
    rotate_if_large(log, max_bytes=5)
    assert not log.exists()
    assert (tmp_path / "d.log.1").exists()
    rotate_if_large(log, max_bytes=5)  # nothing to rotate: no error


IDS: dict[str, Any] = {"deployment_id": "dep-1", "node_id": "node-1"}
EVENT_IDS: dict[str, Any] = {**IDS, "workspace_id": "ws-1"}


@pytest.mark.parametrize(
    ("report", "event"),
    [
        (StatusReport(**IDS, state="starting", attempt=2), DeploymentStarting(**EVENT_IDS)),
        (
            StatusReport(**IDS, state="ready", host_ports={"8080": 41000}),
            DeploymentReady(**EVENT_IDS, host_ports={"8080": 41000}),
        ),
        (
            StatusReport(**IDS, state="stopped", reason="scale-in"),
            DeploymentStopped(**EVENT_IDS, reason="scale-in"),
        ),
        (
            StatusReport(**IDS, state="failed", reason="exited with code 1"),
            DeploymentFailed(**EVENT_IDS, reason="exited with code 1"),
        ),
        (
            StatusReport(**IDS, state="failed", reason="exited", log_tail=("a", "b")),
            DeploymentFailed(**EVENT_IDS, reason="exited\nlast log lines:\na\nb"),
        ),
    ],
)
def test_status_reports_map_to_deployment_events(report: StatusReport, event: object) -> None:
    assert report.to_event("ws-1") == event


def test_a_failure_event_carries_at_most_twenty_log_lines() -> None:
    tail = tuple(f"line {i}" for i in range(50))
    event = StatusReport(**IDS, state="failed", reason="boom", log_tail=tail).to_event("ws-1")
    assert isinstance(event, DeploymentFailed)
    assert event.reason.splitlines()[2:] == [f"line {i}" for i in range(30, 50)]


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exited with code 0"),
        (3, "exited with code 3"),
        (-9, "killed by SIGKILL"),
        (-15, "killed by SIGTERM"),
        (-200, "killed by signal 200"),
    ],
)
def test_describe_exit(code: int, text: str) -> None:
    assert describe_exit(code) == text
