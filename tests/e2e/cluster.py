"""Real processes for end-to-end tests on 127.0.0.1: the control plane (`ngpu up` on the
embedded log, or on Kafka one `ngpu serve` process per role group: ingress+projector,
scheduler, two dispatchers, webhooks) and `ngpu node` agents."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from services.certs import trusting
from services.demo import DEMO_BTC_ADDRESS, DEMO_NODE_ADDRESS, demo_workspace

ADMIN_TOKEN = "e2e-admin-token"
JOIN_TOKEN = "e2e-join-token"
DISPATCHERS = 2
T = TypeVar("T")


def sample_workspace(**overrides: Any) -> dict[str, Any]:
    """`ngpu up --demo`'s workspace (the sample app on one RTX 4090) with two replicas and
    a 30 s timeout; `overrides` replace top-level fields."""
    body: dict[str, Any] = {
        **demo_workspace(), "name": "sample", "image": "ngpu/sample:dev",
        "replicas": {"min": 2, "max": 2}, "timeout_s": 30,
    }  # fmt: skip
    return {**body, **overrides}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout_s`
    (a guard against hangs, not a performance assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@dataclass
class Cluster:
    """A control plane child process and the node agents started against it."""

    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    schedulers: int = 1
    more_ingress_ports: list[int] = field(default_factory=list)
    """On Kafka: ingress+projector processes beyond the first, each with its own chdb."""
    one_process: bool = False
    """On Kafka: every role in one `ngpu serve` process, as `ngpu up` runs them."""
    command: tuple[str, ...] = ("-m", "services.cli")
    """What the Python interpreter runs with the `ngpu` arguments (a wrapper, say)."""
    tls_ca: Path | None = None
    """The certificate the ingress serves (`NGPU_TLS_*` in `env`): calls it over https."""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_ca else 'http'}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx calls of `url` trust."""
        return trusting(self.tls_ca) if self.tls_ca else True

    @property
    def on_kafka(self) -> bool:
        return self.env.get("NGPU_BUS") == "kafka"

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.data_dir / log_name, "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, *self.command, *args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.processes.append(process)
        return process

    def start_control_plane(self, *extra: str) -> None:
        if not self.on_kafka:
            args = ["up", "--port", str(self.port), "--data-dir", str(self.data_dir), *extra]
            self._spawn(args, "up.log")
            wait_for(self._healthy, 60, "the control plane to answer")
            return
        rest = ",scheduler,dispatcher,webhooks" if self.one_process else ""
        first = "ingress,projector" + rest
        groups = [(first, "ingress", ["--port", str(self.port)])]
        groups += [("ingress,projector", f"ingress-{port}", ["--port", str(port)])
                   for port in self.more_ingress_ports]  # fmt: skip
        if not self.one_process:
            groups += [("scheduler", f"scheduler-{n}", []) for n in range(1, self.schedulers + 1)]
            groups += [("dispatcher", f"dispatcher-{n}", []) for n in range(1, DISPATCHERS + 1)]
            groups += [("webhooks", "webhooks", [])]
        for roles, name, args in groups:
            data_dir = self.data_dir if name == "ingress" else self.data_dir / name
            self._spawn(["serve", "--roles", roles, "--data-dir", str(data_dir), *args],
                        f"{name}.log")  # fmt: skip
        for _, name, _ in groups:
            log = self.data_dir / f"{name}.log"
            wait_for(lambda log=log: b"running" in log.read_bytes(), 60, f"{name} to start")  # type: ignore[misc]
        wait_for(self._healthy, 60, "the control plane to answer")

    def start_demo(self) -> str:
        """`ngpu up --demo` (on Kafka: the same workspace and a node agent, registered
        through the API); returns the demo workspace's ID once its replica is ready."""
        if not self.on_kafka:
            self.start_control_plane("--demo")
            log = self.data_dir / "up.log"
            wait_for(lambda: b"demo workspace:" in log.read_bytes(), 120, "the demo to be ready")
            return (self.data_dir / "demo-workspace-id").read_text().strip()
        holdings = self.data_dir / "brc20-demo-holdings.json"
        holdings.write_bytes(orjson.dumps({DEMO_BTC_ADDRESS: {"AINN": 100}}))
        self.env.update(NGPU_BRC20_PROVIDER="file", NGPU_BRC20_FILE=str(holdings))
        self.start_control_plane()
        created = httpx.post(f"{self.url}/v1/workspaces", json=demo_workspace(),
                             headers=self.admin(), timeout=30)  # fmt: skip
        created.raise_for_status()
        workspace_id = str(created.json()["workspace_id"])
        self.start_node("demo", region="local", address=DEMO_NODE_ADDRESS)
        wait_for(lambda: self._ready(workspace_id), 120, "the demo replica to be ready")
        return workspace_id

    def _ready(self, workspace_id: str) -> bool:
        return any(
            d["state"] == "ready" and d["workspace_id"] == workspace_id
            for n in self.nodes()
            for d in n["deployments"]
        )

    def events(self, topic: str = "ngpu.tasks") -> list[dict[str, Any]]:
        """The log's events, read by `ngpu events tail` in its own process."""
        out = subprocess.run(
            [sys.executable, "-m", "services.cli", "events", "tail", "--no-follow",
             "--from-beginning", "--topic", topic, "--data-dir", str(self.data_dir)],
            env=self.env, capture_output=True, check=True,
        ).stdout  # fmt: skip
        return [orjson.loads(line) for line in out.splitlines()]

    def _healthy(self) -> bool:
        """Ready to serve: every role of the ingress's process has caught up with the log
        (before that, `/healthz` answers but the API says 503)."""
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1, verify=self.verify).status_code == 200
        except httpx.HTTPError:
            return False

    def start_node(
        self, name: str, gpu: str = "RTX4090:1", region: str = "", address: str = "",
        *extra: str,
    ) -> None:  # fmt: skip
        """`ngpu node` named `name` (its work dir and log), with `extra` options."""
        address = address or "0x" + name.encode().hex().ljust(40, "0")[:40]
        args = ["node", "--control-plane", self.url, "--join-token", JOIN_TOKEN,
                "--host", "127.0.0.1", "--address", address, "--gpu", gpu,
                "--region", region, "--work-dir", str(self.data_dir / name), *extra]  # fmt: skip
        self.agents[name] = self._spawn(args, f"{name}.log")

    def one_replica_workspace(self, node: str, **fields: Any) -> tuple[dict[str, Any], str]:
        """Create `sample_workspace(**fields)` (one replica unless `fields` say otherwise) and
        wait for a replica on `node` to be ready; its creation answer and the sample app's
        own URL (from the line it prints into its deployment's log)."""
        body = sample_workspace(**{"replicas": {"min": 1, "max": 1}, **fields})
        created = httpx.post(f"{self.url}/v1/workspaces", json=body, headers=self.admin(),
                             timeout=30)  # fmt: skip
        assert created.status_code == 201, created.text
        wait_for(lambda: any(d["state"] == "ready" for n in self.nodes()
                             for d in n["deployments"]), 90, "the replica to be ready")  # fmt: skip
        return created.json(), wait_for(lambda: self.container_url(node), 30, "the container's URL")

    def container_url(self, node: str) -> str | None:
        """The sample app's address on `node`, from the line it prints into its log."""
        for log in sorted((self.data_dir / node).rglob("*.log")):
            found = re.findall(rb"sampleapp listening on (http://127\.0\.0\.1:\d+)",
                               log.read_bytes())  # fmt: skip
            if found:
                return str(found[-1].decode())
        return None

    def kill_node(self, name: str) -> None:
        """SIGKILL the agent and everything it started, as if the host died."""
        agent = self.agents.pop(name)
        # The agent goes first, so it cannot see its children die and report it.
        for pid in [agent.pid, *_descendants(agent.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        agent.wait(timeout=10)

    def nodes(self) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/v1/nodes", headers=self.admin(), timeout=10, verify=self.verify
        )
        response.raise_for_status()
        return list(response.json()["nodes"])

    def node_named(self, name: str) -> dict[str, Any] | None:
        address = "0x" + name.encode().hex().ljust(40, "0")[:40]
        matches = [n for n in self.nodes() if n["address"] == address]
        return matches[-1] if matches else None

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(x) for x in line.split())
        children.setdefault(parent, []).append(child)
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def cluster_env(kafka_bootstrap: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a cluster's processes; with `kafka_bootstrap`, on Kafka in a
    namespace of its own (topics and groups no other test sees)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    if kafka_bootstrap:
        env.update(
            NGPU_BUS="kafka", NGPU_KAFKA_BOOTSTRAP=kafka_bootstrap,
            NGPU_KAFKA_NAMESPACE=f"e2e-{uuid.uuid4().hex[:12]}.",
        )  # fmt: skip
    env.update(
        NGPU_ADMIN_TOKEN=ADMIN_TOKEN, NGPU_NODE_JOIN_TOKEN=JOIN_TOKEN,
        NGPU_HEARTBEAT_INTERVAL_S="0.5", NGPU_NODE_LOST_AFTER_S="3",
        NGPU_SCHEDULER_TICK_S="0.2", NGPU_BUS_POLL_INTERVAL_S="0.05",
    )  # fmt: skip
    env.update(extra)
    return env
