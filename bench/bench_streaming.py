"""Streaming benchmark on the embedded mode: time to first byte of a streamed response,
the container's own against the gateway's. `ngpu up --demo` in a child process (all
roles in one process, one local node agent running the sample app behind its proxy).

Sequential calls of the sample app's `/stream` (`n` server-sent events `gap_ms` apart),
interleaved in blocks of 50 so both paths see the same machine state; each call's time
to its first body byte is taken, then the rest of the body is read, then the bench pauses
`pause_ms` (the demo replica has one slot, which frees once the scheduler has folded the
task's end: without the pause a call would also measure that wait):
- straight to the container's `/stream`, on the loopback port the sample app listens on;
- through the gateway: `POST /user/stream` with `Accept: text/event-stream` (the task is
  submitted, made durable, scheduled, dispatched through the node's proxy, and its first
  chunk handed to the waiting request in process);
- for reference, the same call without the header: the time to the whole JSON answer.

Run: .venv/bin/python bench/bench_streaming.py [--calls 1000] [--events 3] [--gap-ms 5]
     [--pause-ms 30]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
for where in (REPO, REPO / "bench"):
    if str(where) not in sys.path:
        sys.path.insert(0, str(where))

from bench_gateway import find_replica, free_port, pct, print_report, start  # noqa: E402


def first_byte_ms(client: httpx.Client, url: str, body: dict[str, object],
                  headers: dict[str, str], pause_ms: int) -> float:  # fmt: skip
    """ms from sending the request to holding the first byte of the body (then the rest
    is read); fails unless the answer is a 200 `text/event-stream`."""
    started = time.perf_counter()
    with client.stream("POST", url, json=body, headers=headers) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        elapsed = (time.perf_counter() - started) * 1000
        rest = b"".join(chunks)
    kind = response.headers.get("content-type", "")
    if response.status_code != 200 or not kind.startswith("text/event-stream") or not first:
        raise SystemExit(f"not a stream: {response.status_code} {kind} {first + rest!r}")
    time.sleep(pause_ms / 1000)
    return elapsed


def whole_ms(client: httpx.Client, url: str, body: dict[str, object],
             headers: dict[str, str], pause_ms: int) -> float:  # fmt: skip
    """ms from sending the request to holding the whole (JSON) answer."""
    started = time.perf_counter()
    response = client.post(url, json=body, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    time.sleep(pause_ms / 1000)
    return elapsed


def measure(base: str, workspace_id: str, container: str, calls: int, events: int,
            gap_ms: int, pause_ms: int) -> dict[str, list[float]]:  # fmt: skip
    wanted = {"n": events, "gap_ms": gap_ms}
    bearer = {"Authorization": f"Bearer {workspace_id}"}
    auth = {**bearer, "Accept": "text/event-stream"}
    with httpx.Client(trust_env=False, timeout=30) as client:
        paths: dict[str, Callable[[], float]] = {
            "direct": lambda: first_byte_ms(client, f"{container}/stream", wanted, {}, pause_ms),
            "gateway": lambda: first_byte_ms(
                client, f"{base}/user/stream", {"data": wanted}, auth, pause_ms
            ),
            "gateway_json": lambda: whole_ms(
                client, f"{base}/user/stream", {"data": wanted}, bearer, pause_ms
            ),
        }
        for path in paths.values():  # warm up
            for _ in range(50):
                path()
        samples: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(max(1, calls // 50)):
            for name, path in paths.items():
                samples[name] += [path() for _ in range(50)]
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--gap-ms", type=int, default=5)
    parser.add_argument("--pause-ms", type=int, default=30)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        process = start(Path(tmp), port, secrets.token_hex(32))
        base = f"http://127.0.0.1:{port}"
        try:
            workspace_id = (Path(tmp) / "demo-workspace-id").read_text().strip()
            nodes = httpx.get(f"{base}/v1/nodes", headers={"Authorization": "Bearer bench"}).json()
            replica = find_replica(nodes["nodes"], workspace_id, process.pid)
            container = f"http://127.0.0.1:{replica.container_port}"
            samples = measure(base, workspace_id, container, args.calls, args.events,
                              args.gap_ms, args.pause_ms)  # fmt: skip
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)

    def p50_p99(name: str, minus: str = "") -> str:
        p50, p99 = statistics.median(samples[name]), pct(samples[name], 99)
        if minus:
            p50, p99 = p50 - statistics.median(samples[minus]), p99 - pct(samples[minus], 99)
        return f"{p50:.2f} / {p99:.2f} ms"

    calls = len(samples["direct"])
    shape = f"{args.events} events {args.gap_ms} ms apart"
    print_report([
        (f"time to first byte, the container's `/stream` ({shape}), p50 / p99", p50_p99("direct")),
        ("time to first byte through the gateway (sync, `Accept: text/event-stream`), "
         "p50 / p99", p50_p99("gateway")),
        ("**added by the gateway**, p50 / p99 (target ≤ 5 ms)", p50_p99("gateway", "direct")),
        ("for reference: the whole JSON answer through the gateway (no `Accept`), p50 / p99",
         p50_p99("gateway_json")),
    ], setup=f"; {calls} calls per path", load_before=load)  # fmt: skip


if __name__ == "__main__":
    main()
