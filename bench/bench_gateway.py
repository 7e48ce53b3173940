"""Gateway benchmark on the embedded mode: `ngpu up --demo` in a child process (all roles
in one process, one local node agent running the sample app).

- sync pass-through added latency: sequential POSTs with 1 KB bodies through
  `/user/echo` against the same 1 KB straight to the container's `/echo`;
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
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    env.update(NGPU_RATE_LIMIT_PER_S="0", NGPU_ADMIN_TOKEN="bench", NGPU_LOG_LEVEL="warning")
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


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1]


def timed(client: httpx.Client, url: str, body: bytes | None, json: object, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.post(url, content=body, json=json)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return samples


def sync_latency(base: str, workspace_id: str, container: str, n: int) -> dict[str, float]:
    payload = "x" * 1024
    auth = {"Authorization": f"Bearer {workspace_id}"}
    with httpx.Client(trust_env=False, timeout=30) as client:
        timed(client, f"{container}/echo", payload.encode(), None, 50)  # warm up both paths
        client.headers.update(auth)
        timed(client, f"{base}/user/echo", None, {"data": payload}, 50)
        direct, gateway = [], []
        for _ in range(n // 100):  # interleave, so both see the same machine state
            direct += timed(client, f"{container}/echo", payload.encode(), None, 100)
            gateway += timed(client, f"{base}/user/echo", None, {"data": payload}, 100)
    return {
        "direct_p50": statistics.median(direct), "direct_p99": pct(direct, 99),
        "gateway_p50": statistics.median(gateway), "gateway_p99": pct(gateway, 99),
    }  # fmt: skip


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
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        process = start(Path(tmp), port)
        base = f"http://127.0.0.1:{port}"
        try:
            workspace_id = (Path(tmp) / "demo-workspace-id").read_text().strip()
            nodes = httpx.get(f"{base}/v1/nodes", headers={"Authorization": "Bearer bench"}).json()
            host_port = nodes["nodes"][0]["deployments"][0]["ports"]["8080"]
            sync = sync_latency(base, workspace_id, f"http://127.0.0.1:{host_port}", args.sync)
            if shutil.which("wrk"):
                client = "wrk"
                rate = wrk_rate(base, workspace_id, args.wrk_seconds, args.clients)
            else:
                client = "httpx"
                rate = asyncio.run(async_rate(base, workspace_id, args.async_tasks, args.clients))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    added_p50 = sync["gateway_p50"] - sync["direct_p50"]
    added_p99 = sync["gateway_p99"] - sync["direct_p99"]
    rows = [
        ("direct call to the container, 1 KB, p50 / p99",
         f"{sync['direct_p50']:.2f} / {sync['direct_p99']:.2f} ms"),
        ("through the gateway (sync), 1 KB, p50 / p99",
         f"{sync['gateway_p50']:.2f} / {sync['gateway_p99']:.2f} ms"),
        ("added by the gateway, p50 / p99", f"{added_p50:.2f} / {added_p99:.2f} ms"),
        (f"async submissions ({rate['submitted']:,.0f} from {args.clients} {client} clients)",
         f"{rate['rate']:,.0f} /s"),
        (f"until all {rate['submitted']:,.0f} completed", f"{rate['drain_s']:.1f} s"),
    ]  # fmt: skip
    print_report(rows)


def load_arguments(**defaults: int) -> argparse.ArgumentParser:
    """The options both gateway benches take, plus `defaults` (name: default) of their own."""
    parser = argparse.ArgumentParser(description=__doc__)
    options = {"sync": 1000, "async_tasks": 5000, "clients": 32, "wrk_seconds": 10, **defaults}
    for name, default in options.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    return parser


def print_report(rows: list[tuple[str, str]], setup: str = "") -> None:
    """The machine line and a markdown table of (measure, result)."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"Machine: {machine}, Python {platform.python_version()}{setup}")
    print()
    print("| measure | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
