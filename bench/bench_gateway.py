"""Gateway benchmark on the embedded mode: `ngpu up --demo` in a child process (all roles
in one process, one local node agent running the sample app behind its proxy).

- sync pass-through added latency: sequential POSTs with 1 KB bodies, interleaved in
  blocks of 100 so that every path sees the same machine state:
  - straight to the container's `/echo`, on the loopback port the sample app itself
    listens on (found in its environment: the agent's process runtime sets
    `NGPU_PORT_<port>`; checked against the app's `/whoami`);
  - through the node's proxy (the deployment's registered host port), signed with the
    deployment's secret and over HTTPS trusting only the node's registered certificate,
    from httpx as the direct call is made;
  - the dispatcher's own call (`services.dispatcher.call.call_node` on an aiohttp session
    made as the dispatcher makes its own, on uvloop), straight to the container
    (unsigned, plain HTTP) and through the proxy (signed, pinned to the registered
    certificate): the proxy's cost on the path every dispatch takes;
  - through the gateway, `/user/echo`;
- async submissions/s: `/user/schedulingTask` from concurrent clients (taskID returned,
  i.e. `TaskSubmitted` durable), and how long until every one of them completed.

The async load comes from `wrk` when it is installed (`apt-get install wrk`; a C client
leaves the 2 cores to the system under test), else from httpx in this process.

Run: .venv/bin/python bench/bench_gateway.py [--sync 1000] [--clients 32] [--wrk-seconds 10]
     [--async-tasks 5000 (httpx only)]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from events import TaskCompleted, TaskDispatched  # noqa: E402
from services.callsign import PROXY_ERROR_HEADER, deployment_secret, sign  # noqa: E402
from services.dispatcher.call import CallPolicy, call_node  # noqa: E402
from services.hosts import HostPolicy  # noqa: E402
from services.settings import Settings  # noqa: E402

DECLARED_PORT = "8080"
"""The port the demo and the Kafka bench's workspaces declare for the sample app."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(data_dir: Path, port: int, call_key: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    env.update(NGPU_RATE_LIMIT_PER_S="0", NGPU_ADMIN_TOKEN="bench", NGPU_LOG_LEVEL="warning",
               NGPU_NODE_CALL_KEY=call_key)  # fmt: skip
    log = (data_dir / "up.log").open("wb")
    args = [sys.executable, "-m", "services.cli", "up", "--demo", "--port", str(port),
            "--data-dir", str(data_dir)]  # fmt: skip
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while b"demo workspace:" not in (data_dir / "up.log").read_bytes():
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("ngpu up --demo did not start; see " + str(data_dir / "up.log"))
        time.sleep(0.2)
    return process


@dataclass(frozen=True, slots=True)
class Replica:
    """The sample replica as the dispatcher calls it (its node's proxy, from `GET
    /v1/nodes`) and where its container itself listens."""

    node_id: str
    node_ip: str
    node_address: str
    deployment_id: str
    proxy_port: int
    """The registered host port: the node's proxy."""
    proxy_cert: str
    proxy_cert_sha256: str
    """The pin; empty when the node serves its proxies over plain HTTP."""
    container_port: int
    """Where the sample app listens, on loopback."""

    @property
    def proxy_url(self) -> str:
        scheme = "https" if self.proxy_cert_sha256 else "http"
        return f"{scheme}://{self.node_ip}:{self.proxy_port}"


def descendants(root: int) -> list[int]:
    """The pids of every process below `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def container_port(root: int, deployment_id: str) -> int:
    """The loopback port of `deployment_id`'s sample app, a descendant of `root` (the node
    agent, or a process that started it): the process runtime tells the app where to listen
    in its environment (`NGPU_PORT_<declared port>`, with `NGPU_DEPLOYMENT_ID`); the app's
    `/whoami` must then name the same pid and port."""
    for pid in descendants(root):
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        env = dict(item.partition("=")[::2] for item in raw.decode(errors="replace").split("\0"))
        if env.get("NGPU_DEPLOYMENT_ID") != deployment_id:
            continue
        port = int(env[f"NGPU_PORT_{DECLARED_PORT}"])
        whoami = httpx.get(f"http://127.0.0.1:{port}/whoami", trust_env=False).json()
        if (whoami["pid"], whoami["port"]) != (pid, port):
            raise SystemExit(f"port {port} is not the sample app's (pid {pid}): {whoami}")
        return port
    raise SystemExit(f"no process below pid {root} runs deployment {deployment_id}")


def find_replica(nodes: list[dict[str, Any]], workspace_id: str, root: int) -> Replica:
    """`workspace_id`'s ready replica in `nodes` (`GET /v1/nodes`); its app below `root`."""
    for node in nodes:
        for deployment in node["deployments"]:
            if deployment["workspace_id"] == workspace_id and deployment["state"] == "ready":
                return Replica(
                    node_id=node["node_id"], node_ip=node["host"], node_address=node["address"],
                    deployment_id=deployment["deployment_id"],
                    proxy_port=int(deployment["ports"][DECLARED_PORT]),
                    proxy_cert=node["proxy_cert"], proxy_cert_sha256=node["proxy_cert_sha256"],
                    container_port=container_port(root, deployment["deployment_id"]),
                )  # fmt: skip
    raise SystemExit(f"workspace {workspace_id} has no ready replica")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1]


def timed(
    client: httpx.Client,
    url: str,
    body: bytes | None,
    json: object,
    n: int,
    headers: Callable[[], dict[str, str]] | None = None,
) -> list[float]:
    """`n` sequential POSTs, in ms each; `headers` are made per call, inside the timing."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.post(url, content=body, json=json,
                               headers=headers() if headers else None)  # fmt: skip
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return samples


class DispatcherClient:
    """The dispatcher's own call (`call_node`) on a session made as `Dispatcher.run` makes
    its own, on the kind of loop `ngpu up` runs it on (uvloop when installed)."""

    def __init__(self) -> None:
        try:
            import uvloop
        except ImportError:
            self.runner = asyncio.Runner()
        else:
            self.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        self.session = self.runner.run(self._open())

    @staticmethod
    async def _open() -> aiohttp.ClientSession:
        concurrency = Settings.model_fields["dispatcher_concurrency"].default
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=concurrency)
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    def timed(self, dispatches: list[TaskDispatched], policy: CallPolicy) -> list[float]:
        """Each of `dispatches` called in turn, in ms each."""
        return self.runner.run(self._timed(dispatches, policy))

    async def _timed(self, dispatches: list[TaskDispatched], policy: CallPolicy) -> list[float]:
        samples = []
        for dispatch in dispatches:
            started = time.perf_counter()
            result = await call_node(self.session, dispatch, policy)
            samples.append((time.perf_counter() - started) * 1000)
            if not isinstance(result, TaskCompleted) or result.status_code != 200:
                raise SystemExit(f"the dispatcher's call failed: {result}")
        return samples

    def close(self) -> None:
        self.runner.run(self.session.close())
        self.runner.close()


def sync_latency(
    base: str, workspace_id: str, replica: Replica, call_key: bytes, n: int
) -> dict[str, list[float]]:
    """Per path, the ms of each of `n` sequential calls (see the module's docstring)."""
    payload = "x" * 1024
    auth = {"Authorization": f"Bearer {workspace_id}"}
    container = f"http://127.0.0.1:{replica.container_port}"
    secret = deployment_secret(call_key, replica.deployment_id)
    calls = iter(range(1 << 62))

    def signed() -> dict[str, str]:
        return sign(secret, "POST", "/echo", f"bench-{next(calls)}")

    # httpx cannot pin a digest: it trusts the registered certificate as its only CA (the
    # certificate names no host, so none is checked), which accepts the same peer.
    tls = ssl.create_default_context(cadata=replica.proxy_cert or None)
    tls.check_hostname = False
    tls.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    template = TaskDispatched(
        task_id="", workspace_id=workspace_id, attempt=1, node_id=replica.node_id,
        node_ip=replica.node_ip, node_address=replica.node_address,
        deployment_id=replica.deployment_id, host_port=replica.proxy_port, param_url="/echo",
        request_body=payload, content_type="application/octet-stream", timeout_s=60,
        proxy_cert_sha256=replica.proxy_cert_sha256,
    )  # fmt: skip
    # As `ngpu up` builds the dispatcher's (the gateway binds 127.0.0.1: loopback allowed).
    policy = CallPolicy(call_key=call_key, hosts=HostPolicy.from_settings((), "127.0.0.1"))
    bare = dataclasses.replace(template, host_port=replica.container_port, proxy_cert_sha256="")
    bare_policy = dataclasses.replace(policy, call_key=b"")

    def dispatches(like: TaskDispatched, count: int) -> list[TaskDispatched]:
        return [dataclasses.replace(like, task_id=f"bench-{next(calls)}") for _ in range(count)]

    dispatcher = DispatcherClient()
    with (
        httpx.Client(trust_env=False, timeout=30) as client,
        httpx.Client(trust_env=False, timeout=30, verify=tls) as proxied,
    ):
        unsigned = proxied.post(f"{replica.proxy_url}/echo", content=payload.encode())
        if unsigned.status_code != 401 or PROXY_ERROR_HEADER not in unsigned.headers:
            raise SystemExit(f"the node's proxy took an unsigned call: {unsigned.status_code}")
        paths: dict[str, Callable[[int], list[float]]] = {
            "direct": lambda k: timed(client, f"{container}/echo", payload.encode(), None, k),
            "proxy": lambda k: timed(
                proxied, f"{replica.proxy_url}/echo", payload.encode(), None, k, signed
            ),
            "dispatcher_direct": lambda k: dispatcher.timed(dispatches(bare, k), bare_policy),
            "dispatcher_proxy": lambda k: dispatcher.timed(dispatches(template, k), policy),
            "gateway": lambda k: timed(
                client, f"{base}/user/echo", None, {"data": payload}, k, lambda: auth
            ),
        }
        try:
            for path in paths.values():  # warm up every path
                path(50)
            samples: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(n // 100):  # interleave, so all see the same machine state
                for name, path in paths.items():
                    samples[name] += path(100)
        finally:
            dispatcher.close()
    return samples


def sync_rows(samples: dict[str, list[float]]) -> list[tuple[str, str]]:
    """The report's rows of `sync_latency`'s samples."""

    def p50_p99(name: str, minus: str = "") -> str:
        p50, p99 = statistics.median(samples[name]), pct(samples[name], 99)
        if minus:
            p50, p99 = p50 - statistics.median(samples[minus]), p99 - pct(samples[minus], 99)
        return f"{p50:.2f} / {p99:.2f} ms"

    return [
        ("direct call to the container, 1 KB, p50 / p99", p50_p99("direct")),
        ("through the node's proxy (signed, HTTPS), 1 KB, p50 / p99", p50_p99("proxy")),
        ("added by the proxy, p50 / p99", p50_p99("proxy", "direct")),
        ("the dispatcher's call (`call_node`) to the container, p50 / p99",
         p50_p99("dispatcher_direct")),
        ("the dispatcher's call through the proxy (signed, pinned), p50 / p99",
         p50_p99("dispatcher_proxy")),
        ("added by the proxy to the dispatcher's call, p50 / p99 (target p50 ≤ 0.3 ms)",
         p50_p99("dispatcher_proxy", "dispatcher_direct")),
        ("through the gateway (sync), 1 KB, p50 / p99", p50_p99("gateway")),
        ("added by the gateway (vs the direct call), p50 / p99", p50_p99("gateway", "direct")),
    ]  # fmt: skip


async def async_rate(base: str, workspace_id: str, total: int, clients: int) -> dict[str, float]:
    auth = {"Authorization": f"Bearer {workspace_id}"}
    url = f"{base}/user/schedulingTask?paramUrl=echo"
    ids: list[str] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(headers=auth, limits=limits, trust_env=False, timeout=60) as http:

        async def worker(count: int) -> None:
            for _ in range(count):
                response = await http.post(url, json={"data": '{"n": 1}'})
                ids.append(response.json()["taskID"])

        started = time.perf_counter()
        await asyncio.gather(*(worker(total // clients) for _ in range(clients)))
        submitted = time.perf_counter() - started
        last = ids[-1]
        while True:  # the tasks complete in the background; the last one ends after the rest
            body = (await http.get(f"{base}/user/queryTask", params={"taskID": last})).json()
            if body["result_code"] != 100:
                break
            await asyncio.sleep(0.05)
        drained = time.perf_counter() - started
    return {"submitted": len(ids), "rate": len(ids) / submitted, "drain_s": drained}


WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = '{"data": "{\\"n\\": 1}"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


def completed_tasks(base: str, admin_token: str = "bench") -> int:
    auth = {"Authorization": f"Bearer {admin_token}"}
    response = httpx.get(f"{base}/v1/analytics/usage", headers=auth)
    return sum(row["tasks"] for row in response.json()["rows"])


def wrk_rate(
    base: str, workspace_id: str, seconds: int, clients: int, admin_token: str = "bench"
) -> dict[str, float]:
    """Async submissions driven by wrk (a C load generator, so the client takes little of
    the 2 cores); then the time until all of them completed."""
    before = completed_tasks(base, admin_token)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % workspace_id)
    url = f"{base}/user/schedulingTask?paramUrl=echo"
    started = time.perf_counter()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "-s", script.name, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    os.unlink(script.name)
    total = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
    failed = [line for line in out.splitlines() if "Non-2xx" in line]
    if failed:
        raise SystemExit(f"wrk saw errors: {failed}")
    rate = float(next(line for line in out.splitlines() if "Requests/sec" in line).split()[1])
    while completed_tasks(base, admin_token) < before + total:
        time.sleep(0.2)
    return {"submitted": total, "rate": rate, "drain_s": time.perf_counter() - started}


def main() -> None:
    args = load_arguments().parse_args()
    load = os.getloadavg()[0]
    call_key = secrets.token_hex(32)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        process = start(Path(tmp), port, call_key)
        base = f"http://127.0.0.1:{port}"
        try:
            workspace_id = (Path(tmp) / "demo-workspace-id").read_text().strip()
            nodes = httpx.get(f"{base}/v1/nodes", headers={"Authorization": "Bearer bench"}).json()
            replica = find_replica(nodes["nodes"], workspace_id, process.pid)
            sync = sync_latency(base, workspace_id, replica, call_key.encode(), args.sync)
            if shutil.which("wrk"):
                client = "wrk"
                rate = wrk_rate(base, workspace_id, args.wrk_seconds, args.clients)
            else:
                client = "httpx"
                rate = asyncio.run(async_rate(base, workspace_id, args.async_tasks, args.clients))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    rows = [
        *sync_rows(sync),
        (f"async submissions ({rate['submitted']:,.0f} from {args.clients} {client} clients)",
         f"{rate['rate']:,.0f} /s"),
        (f"until all {rate['submitted']:,.0f} completed", f"{rate['drain_s']:.1f} s"),
    ]  # fmt: skip
    print_report(rows, load_before=load)


def load_arguments(**defaults: int) -> argparse.ArgumentParser:
    """The options both gateway benches take, plus `defaults` (name: default) of their own."""
    parser = argparse.ArgumentParser(description=__doc__)
    options = {"sync": 1000, "async_tasks": 5000, "clients": 32, "wrk_seconds": 10, **defaults}
    for name, default in options.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    return parser


def print_report(
    rows: list[tuple[str, str]], setup: str = "", load_before: float | None = None
) -> None:
    """The machine line (with the 1-minute load average before the run and now, when
    `load_before` is given: other work on the machine moves every figure) and a markdown
    table of (measure, result)."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"Machine: {machine}, Python {platform.python_version()}{setup}")
    if load_before is not None:
        print(f"Load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print()
    print("| measure | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
