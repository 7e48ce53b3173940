"""Webhook delivery latency at a steady submission rate, on the embedded mode: `ngpu up` in
a child process (every role, the webhooks role included), one `ngpu node` agent running
the sample app (one replica serving `--concurrency` calls at once), and, in this process,
the load (`schedulingTask` of `/echo` with `webhook=`, open loop at `--rate` per second)
and the receiver (aiohttp on 127.0.0.1, allowed by NGPU_WEBHOOK_HOST_ALLOW), which checks
every signature with the `standardwebhooks` library and answers 200.

Measured per task, on the one machine clock:
- delivery latency: the receiver's arrival time minus the payload's `timestamp` (the
  time of the task's `TaskCompleted`): what the webhooks role adds;
- end to end: arrival minus the moment the submission was sent.

Run: .venv/bin/python bench/bench_webhooks.py [--rate 200] [--seconds 30] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from services.demo import demo_workspace  # noqa: E402

ADMIN = "bench"
JOIN = "bench-join"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1]


class Receiver:
    def __init__(self) -> None:
        self.secret = ""
        self.arrivals: dict[str, tuple[float, float]] = {}
        """taskID -> (arrival, the payload's timestamp), unix seconds."""
        self.bad_signatures = 0
        self.duplicates = 0
        self.done = asyncio.Event()
        self.expected = 0

    async def hook(self, request: web.Request) -> web.Response:
        arrived = time.time()
        body = await request.read()
        try:
            document = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=200)
        task_id = document["data"]["taskID"]
        if task_id in self.arrivals:
            self.duplicates += 1
        stamp = datetime.fromisoformat(document["timestamp"].replace("Z", "+00:00")).timestamp()
        self.arrivals[task_id] = (arrived, stamp)
        if self.expected and len(self.arrivals) >= self.expected:
            self.done.set()
        return web.Response(status=200)


def start_gateway(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    env.update(NGPU_RATE_LIMIT_PER_S="0", NGPU_ADMIN_TOKEN=ADMIN, NGPU_NODE_JOIN_TOKEN=JOIN,
               NGPU_LOG_LEVEL="warning", NGPU_WEBHOOK_HOST_ALLOW='["127.0.0.1/32"]')  # fmt: skip
    log = (data_dir / "up.log").open("wb")
    args = [sys.executable, "-m", "services.cli", "up", "--port", str(port),
            "--data-dir", str(data_dir)]  # fmt: skip
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


def start_node(data_dir: Path, url: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    log = (data_dir / "node.log").open("wb")
    args = [sys.executable, "-m", "services.cli", "node", "--control-plane", url,
            "--join-token", JOIN, "--host", "127.0.0.1", "--address", "0x" + "b" * 40,
            "--gpu", "RTX4090:1", "--work-dir", str(data_dir / "node")]  # fmt: skip
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait(probe: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if result := probe():
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


async def load(url: str, auth: dict[str, str], hook: str, rate: float, seconds: float,
               sent: dict[str, float]) -> int:  # fmt: skip
    """Submit at `rate` per second for `seconds` (open loop); returns the submissions
    refused or lost by the client."""
    refused = 0
    total = int(rate * seconds)
    began = time.monotonic()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:

        async def one() -> None:
            nonlocal refused
            at = time.time()
            try:
                answer = await http.post("/user/schedulingTask",
                                         params={"paramUrl": "echo", "webhook": hook},
                                         json={"data": {"n": 1}}, headers=auth)  # fmt: skip
            except httpx.HTTPError:  # the client's own connection trouble: not a task
                refused += 1
                return
            if answer.status_code != 202:
                refused += 1
                return
            sent[answer.json()["taskID"]] = at

        pending = []
        for n in range(total):
            if n and n % int(rate * 5) == 0:
                print(f"  {n} of {total} submitted", flush=True)
            delay = began + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one()))
        await asyncio.gather(*pending)
    return refused


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    gateway = start_gateway(data_dir, port)
    node = None
    try:
        await asyncio.to_thread(
            wait, lambda: httpx.get(f"{url}/readyz").status_code == 200, 120, "the gateway"
        )
        node = start_node(data_dir, url)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        body = {**demo_workspace(), "name": "bench", "concurrency": args.concurrency}
        async with httpx.AsyncClient(base_url=url, headers=admin, timeout=30) as http:
            created = await http.post("/v1/workspaces", json=body)
        created.raise_for_status()
        workspace_id = created.json()["workspace_id"]
        receiver.secret = created.json()["webhook_secret"]

        def ready() -> bool:
            nodes = httpx.get(f"{url}/v1/nodes", headers=admin, timeout=10).json()["nodes"]
            return any(d["state"] == "ready" for n in nodes for d in n["deployments"])

        await asyncio.to_thread(wait, ready, 120, "the replica")
        print("replica ready; warming up", flush=True)
        auth = {"Authorization": f"Bearer {workspace_id}"}
        # Warm up (connections, code paths), then measure.
        warm: dict[str, float] = {}
        receiver.expected = 50
        await load(url, auth, hook, 50, 1, warm)
        await asyncio.wait_for(receiver.done.wait(), 60)
        print("warm; measuring", flush=True)
        receiver.arrivals.clear()
        receiver.done.clear()
        sent: dict[str, float] = {}
        receiver.expected = int(args.rate * args.seconds)
        began = time.monotonic()
        refused = await load(url, auth, hook, args.rate, args.seconds, sent)
        offered_s = time.monotonic() - began
        receiver.expected = len(sent)
        deadline = time.monotonic() + 120
        while len(receiver.arrivals) < len(sent) and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(receiver.done.wait(), 5)
            except TimeoutError:
                print(f"  {len(receiver.arrivals)} of {len(sent)} webhooks so far", flush=True)
        report(args, receiver, sent, refused, offered_s)
    finally:
        for process in (node, gateway):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        await runner.cleanup()


def report(args: argparse.Namespace, receiver: Receiver, sent: dict[str, float], refused: int,
           offered_s: float) -> None:  # fmt: skip
    delivery = [(a - stamp) * 1000 for a, stamp in receiver.arrivals.values()]
    end_to_end = [(receiver.arrivals[t][0] - at) * 1000 for t, at in sent.items()
                  if t in receiver.arrivals]  # fmt: skip
    python = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {python}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"offered: {len(sent) + refused} tasks at {args.rate:g}/s over {offered_s:.1f} s "
          f"(refused {refused}); webhooks received {len(receiver.arrivals)} of {len(sent)}, "
          f"bad signatures {receiver.bad_signatures}, "
          f"duplicates {receiver.duplicates}")  # fmt: skip
    for name, values in (("delivery (TaskCompleted -> receiver)", delivery),
                         ("end to end (submit -> receiver)", end_to_end)):  # fmt: skip
        if len(values) >= 2:
            print(f"{name}: p50 {pct(values, 50):.1f} ms, p99 {pct(values, 99):.1f} ms, "
                  f"max {max(values):.1f} ms")  # fmt: skip
    print(orjson.dumps({"delivery_p50_ms": pct(delivery, 50), "delivery_p99_ms": pct(delivery, 99),
                        "e2e_p50_ms": pct(end_to_end, 50), "e2e_p99_ms": pct(end_to_end, 99),
                        "received": len(receiver.arrivals), "sent": len(sent)}).decode()
          if len(delivery) >= 2 and len(end_to_end) >= 2 else "{}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
