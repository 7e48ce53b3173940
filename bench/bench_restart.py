"""Restart benchmark (issue 12, "Living long"): how long `ngpu up --demo` takes to serve
again after a stop, what its processes hold (RSS) and what its data dir holds, with a long
history behind it against none.

The system under test is `ngpu up --demo` in a child process (ingress, scheduler,
dispatcher and projector in one process on the embedded log and chdb; the demo's node
agent and the sample app as its children). Everything goes through the system's own API:

1. a fresh system (no history): started, given a checkpoint interval to save, stopped
   with SIGTERM and restarted, then killed (SIGKILL, with its children, as if the host
   died) and restarted;
2. a system with history: `--tasks` async tasks with 1 KB bodies
   (`POST /user/schedulingTask?paramUrl=echo`, from wrk when installed, else aiohttp),
   submitted in chunks so the backlog stays under `--backlog` and waited for until all
   completed; then `--nodes` fake nodes registered (GPU type A100, so the demo's replica
   never lands on one) and heartbeated as fast as the machine allows for
   `--heartbeat-s` seconds (the liveness topic keeps five minutes: a run longer than that
   fills the window the restart reads); then, once every checkpoint covers the log's
   end, the same SIGTERM and SIGKILL restarts; then a wait until the heartbeats are past
   the liveness window and pruned, and one more SIGTERM restart; with
   `--retention-wait-s`, a wait for the task topic's retention as well.

"Serving" is the first `POST /user/echo` (the demo Workspace ID as bearer) answered 200,
timed from the spawn of the restarted process; RSS is read from /proc a few seconds
later for `ngpu up` and each of its descendants. The phases of each restart come from
the timestamps of its log lines.

Run: .venv/bin/python bench/bench_restart.py [--tasks 100000] [--nodes 1000]
     [--heartbeat-s 330] [--checkpoint-interval-s 10] [--retention-hours 1]
     [--retention-wait-s 0] [--skip-fresh] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin"
JOIN = "bench-join"
PAYLOAD = "x" * 1024
BENCH_NODE_ADDRESS = "0x" + "be" * 20
BENCH_GPU = "A10"
SLOW_LISTEN_S = 5.0
"""A start not listening by then has its threads' kernel waits printed (once)."""
IDLE_S = 10.0
"""Then the CPU of the idle `ngpu up` (the demo's agent heartbeating) over this long."""
SETTLE_S = 5.0
"""Between serving and reading RSS: the restart's transient work (catch-up buffers,
the demo's own polling) has ended by then."""
LIVENESS_S = 300.0
PRUNE_EVERY_S = 30.0
RESTARTS = (("SIGTERM", 0.0), ("SIGKILL", 0.0), ("SIGTERM", 20.0))
"""Each scenario's restarts: at once, and after longer than NGPU_NODE_LOST_AFTER_S (15 s)
down (the demo's agent resumes as the same node, unless it was declared lost meanwhile:
then its heartbeat brings it back, empty, and the replica is placed again)."""
PHASE_LOGGERS = (
    "services.bus.progress", "services.checkpoints", "services.readiness",
    "services.bus.retention", "services.nodeagent.agent",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def proc_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def label(pid: int) -> str:
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if "sampleapp" in cmd:
        return "sample app"
    if " node " in cmd:
        return "node agent"
    return cmd.split()[-1][:30]


def thread_waits(pid: int) -> Counter[str]:
    """Where the process's threads wait in the kernel (`wchan`), counted."""
    found: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found[(task / "wchan").read_text() or "running"] += 1
    return found


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under `path` (each inode once: ClickHouse hard-links parts)."""
    seen: set[int] = set()
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                if st.st_ino not in seen:
                    seen.add(st.st_ino)
                    total += st.st_blocks * 512
    return total


def sizes(data_dir: Path) -> dict[str, int]:
    bus = sum(
        (data_dir / name).stat().st_size
        for name in ("bus.sqlite3", "bus.sqlite3-wal", "bus.sqlite3-shm")
        if (data_dir / name).exists()
    )
    return {"bus": bus, "clickhouse": disk_bytes(data_dir / "clickhouse")}


def log_contents(bus_path: Path) -> dict[str, Any]:
    """Records per topic and, per checkpoint, its age and the records after it (what a
    restart folds beyond it), read on a read-only connection beside the running system."""
    conn = sqlite3.connect(f"file:{bus_path}?mode=ro", uri=True, timeout=30)
    try:
        ends: dict[tuple[str, int], tuple[int, int]] = {}
        rows = conn.execute(
            "SELECT topic, partition, COUNT(*), MAX(offset) FROM records GROUP BY topic, partition"
        ).fetchall()
        per_topic: dict[str, int] = {}
        for topic, partition, count, top in rows:
            per_topic[topic] = per_topic.get(topic, 0) + count
            ends[(topic, partition)] = (count, top + 1)
        checkpoints = {}
        with contextlib.suppress(sqlite3.OperationalError):
            for name, value, written_ms in conn.execute(
                "SELECT name, value, written_ms FROM checkpoints"
            ):
                header = orjson.loads(bytes(value).partition(b"\n")[0])
                tail = 0
                for topic, partition, position in header.get("positions", []):
                    tail += max(0, ends.get((topic, partition), (0, 0))[1] - position)
                checkpoints[name] = {
                    "age_s": time.time() - written_ms / 1000,
                    "tail": tail,
                    "bytes": len(value),
                    "topics": sorted({p[0] for p in header.get("positions", [])}),
                }
        return {"records": per_topic, "checkpoints": checkpoints}
    finally:
        conn.close()


@dataclass
class Restart:
    scenario: str
    how: str
    stop_s: float
    listen_s: float
    ready_s: float
    demo_s: float
    serve_s: float
    serve_bench_s: float
    cpu_s: float
    idle_cpu: float
    rss: dict[str, tuple[int, int]]
    phases: list[tuple[float, str]]
    loadavg: str
    failures: dict[str, int] = field(default_factory=dict)


@dataclass
class System:
    """One `ngpu up --demo` on one data dir, started again as often as asked."""

    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    spawned_at: float = 0.0
    agent: subprocess.Popen[bytes] | None = None
    bench_workspace: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"up-{self.starts}.log"

    def workspace_id(self) -> str:
        return (self.data_dir / "demo-workspace-id").read_text().strip()

    def spawn(self) -> float:
        self.starts += 1
        log = self.log_path.open("wb")
        code = self.env.get("PYTHONPATH") or None
        args = [sys.executable, "-m", "services.cli", "up", "--demo", "--port", str(self.port),
                "--data-dir", str(self.data_dir)]  # fmt: skip
        self.spawned_at = time.time()
        started = time.monotonic()
        self.process = subprocess.Popen(
            args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=code,
        )  # fmt: skip
        log.close()
        return started

    def stop(self, how: str) -> float:
        """SIGTERM (and wait for the exit) or SIGKILL of the process and every descendant,
        as if the host died; seconds until it was gone."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        began = time.monotonic()
        if how == "SIGKILL":
            for pid in [self.process.pid, *descendants(self.process.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        else:
            tree = descendants(self.process.pid)
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)
            left = [pid for pid in tree if Path(f"/proc/{pid}").exists()]
            if left:
                print(f"  ! after SIGTERM, still running: {left}; killed", flush=True)
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        return time.monotonic() - began

    def wait_serving(self, started: float, guard_s: float = 900) -> dict[str, Any]:
        """Seconds from `started` until the port answers, `/readyz` says 200, the demo
        line is printed, and a sync echo answers 200 through the demo workspace
        ("serve") and the bench workspace ("serve_bench", when there is one); the
        failed echo attempts after `/readyz` said 200, by answer."""
        assert self.process is not None
        marks: dict[str, float] = {}
        failures: dict[str, int] = {}
        lock = threading.Lock()
        done = threading.Event()
        id_file = self.data_dir / "demo-workspace-id"

        def mark(name: str) -> None:
            with lock:
                marks.setdefault(name, time.monotonic() - started)

        def failed(what: str) -> None:
            with lock:
                if "ready" in marks:
                    failures[what] = failures.get(what, 0) + 1

        def poll_echo(name: str, bearer: Callable[[], str]) -> None:
            with httpx.Client(base_url=self.base, trust_env=False) as http:
                while name not in marks and not done.is_set():
                    token = bearer()
                    if not token:
                        time.sleep(0.05)
                        continue
                    try:
                        auth = {"Authorization": f"Bearer {token}"}
                        answer = http.post(
                            "/user/echo", json={"data": PAYLOAD}, headers=auth, timeout=120
                        )
                    except httpx.TransportError as exc:
                        failed(f"{name}: {type(exc).__name__}")
                        time.sleep(0.02)
                        continue
                    code = answer.json().get("result_code") if answer.content else None
                    if answer.status_code == 200 and code == 200:
                        mark(name)
                    else:
                        failed(f"{name}: {answer.status_code}/{code}")
                        time.sleep(0.05)

        demo_id = lambda: self.workspace_id() if id_file.exists() else ""  # noqa: E731
        pollers = [threading.Thread(target=poll_echo, args=("serve", demo_id))]
        if self.bench_workspace:
            bench_id = lambda: self.bench_workspace  # noqa: E731
            pollers.append(threading.Thread(target=poll_echo, args=("serve_bench", bench_id)))
        for poller in pollers:
            poller.start()
        waits: Counter[str] = Counter()
        wanted = {"serve", "demo", "ready"} | ({"serve_bench"} if self.bench_workspace else set())
        try:
            with httpx.Client(base_url=self.base, trust_env=False) as http:
                while not wanted <= set(marks):
                    now = time.monotonic() - started
                    if now > guard_s or self.process.poll() is not None:
                        raise SystemExit(f"not serving after {now:.0f} s; see {self.log_path}")
                    if "demo" not in marks and b"demo workspace:" in self.log_path.read_bytes():
                        mark("demo")
                    if "listen" not in marks and now > SLOW_LISTEN_S and not waits:
                        waits.update(thread_waits(self.process.pid))
                        print(f"  not listening after {SLOW_LISTEN_S:.0f} s; the threads wait "
                              f"in {dict(waits)}", flush=True)  # fmt: skip
                    if "ready" not in marks:
                        with contextlib.suppress(httpx.TransportError):
                            answer = http.get("/readyz", timeout=5)
                            mark("listen")
                            if answer.status_code in (200, 404):  # 404: no /readyz (old code)
                                mark("ready")
                    time.sleep(0.02)
        finally:
            done.set()
            for poller in pollers:
                poller.join()
        return {**marks, "failures": failures, "cpu_s": cpu_seconds(self.process.pid)}

    def start_bench_node(self) -> None:
        """A node agent of the bench's own (a second GPU host: it lives on while the
        control plane restarts, as in the crash test) and a workspace on it like the
        demo's but with concurrency 64, so the history builds faster than one task at a
        time."""
        work = self.data_dir.parent / f"{self.data_dir.name}-bench-node"
        work.mkdir(exist_ok=True)
        args = [sys.executable, "-m", "services.cli", "node", "--control-plane", self.base,
                "--join-token", JOIN, "--host", "127.0.0.1", "--address", BENCH_NODE_ADDRESS,
                "--gpu", f"{BENCH_GPU}:1", "--region", "local",
                "--work-dir", str(work)]  # fmt: skip
        with (work / "agent.log").open("ab") as log:
            self.agent = subprocess.Popen(
                args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.env.get("PYTHONPATH") or None,
            )  # fmt: skip
        from services.demo import demo_workspace

        name = f"bench-echo-{os.getpid()}-{self.starts}"  # names are unique per ingress
        body = {**demo_workspace(), "name": name, "concurrency": 64,
                "gpu": {"type": BENCH_GPU, "count": 1}}  # fmt: skip
        admin = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=self.base, headers=admin, trust_env=False) as http:
            created = http.post("/v1/workspaces", json=body, timeout=30)
            created.raise_for_status()
            workspace_id = str(created.json()["workspace_id"])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                nodes = http.get("/v1/nodes", timeout=30).json()["nodes"]
                if any(d["workspace_id"] == workspace_id and d["state"] == "ready"
                       for n in nodes for d in n["deployments"]):  # fmt: skip
                    self.bench_workspace = workspace_id
                    return
                time.sleep(0.2)
        raise SystemExit(f"the bench workspace's replica is not ready; see {work}")

    def shutdown(self) -> None:
        self.stop("SIGTERM")
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.agent.pid, signal.SIGKILL)

    def rss(self) -> dict[str, tuple[int, int]]:
        assert self.process is not None
        found = {"ngpu up": proc_memory(self.process.pid)}
        for pid in descendants(self.process.pid):
            with contextlib.suppress(OSError):
                found[label(pid)] = proc_memory(pid)
        return found

    def phases(self) -> list[tuple[float, str]]:
        """Log lines of the last start worth a timeline (catch-up, checkpoints, readiness,
        retention, the agent's registration, warnings), as seconds after the spawn."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        agent_log = self.data_dir / "demo-node" / "agent.log"
        if agent_log.exists():
            lines += agent_log.read_text(errors="replace").splitlines()
        found = []
        for line in lines:
            if not line[:4].isdigit():
                continue
            stamp, _, rest = line[:23], line[23:24], line[24:]
            try:
                at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            level, _, message = rest.partition(" ")
            if at < self.spawned_at - 1:
                continue
            if level in ("WARNING", "ERROR") or message.startswith(PHASE_LOGGERS):
                found.append((at - self.spawned_at, f"{level} {message}"[:160]))
        return sorted(found + self.placements())

    def placements(self) -> list[tuple[float, str]]:
        """The demo node's and its replica's events since the spawn (the fake nodes of
        the heartbeat load are left out), from the log itself."""
        out = subprocess.run(
            [sys.executable, "-m", "services.cli", "events", "tail", "--no-follow",
             "--from-beginning", "--topic", "ngpu.nodes", "--data-dir", str(self.data_dir)],
            env=self.env, capture_output=True, check=True, cwd=self.env.get("PYTHONPATH"),
        ).stdout  # fmt: skip
        events = [orjson.loads(line) for line in out.splitlines()]
        fake = {e["key"] for e in events if e["data"].get("region") == "fake"}
        found = []
        for event in events:
            data = event["data"]
            at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).timestamp()
            if at < self.spawned_at or event["key"] in fake:
                continue
            if event["type"] in ("NodeLost", "NodeRegistered") or "deployment_id" in data:
                what = f"event {event['type']} {event['key']} {data.get('reason', '')}"
                found.append((at - self.spawned_at, what.strip()))
        return found

    def restart(self, scenario: str, how: str, down_s: float = 0) -> Restart:
        """Stop (`how`), stay down `down_s`, start again and measure."""
        stop_s = self.stop(how)
        time.sleep(down_s)
        if down_s:
            how = f"{how}, {down_s:.0f} s down"
        wal = self.data_dir / "bus.sqlite3-wal"
        print(f"\n{scenario}, {how}: stopped; WAL {mb(wal.stat().st_size if wal.exists() else 0)}")
        started = self.spawn()
        marks = self.wait_serving(started)
        time.sleep(SETTLE_S)
        assert self.process is not None
        before = cpu_seconds(self.process.pid)
        time.sleep(IDLE_S)
        idle_cpu = (cpu_seconds(self.process.pid) - before) / IDLE_S
        result = Restart(
            scenario, how, stop_s, marks["listen"], marks["ready"], marks["demo"],
            marks["serve"], marks.get("serve_bench", 0.0), marks["cpu_s"], idle_cpu, self.rss(),
            self.phases(),
            Path("/proc/loadavg").read_text().split(" ", 3)[2], marks["failures"],
        )  # fmt: skip
        print_restart(result)
        return result


def print_restart(r: Restart) -> None:
    total = sum(rss for rss, _ in r.rss.values())
    print(f"\n{r.scenario}, {r.how}: stopped in {r.stop_s:.1f} s; listening {r.listen_s:.2f} s, "
          f"ready {r.ready_s:.2f} s, serving {r.serve_s:.2f} s (bench workspace "
          f"{r.serve_bench_s:.2f} s), demo line {r.demo_s:.2f} s; "
          f"CPU of ngpu up until serving {r.cpu_s:.1f} s, then idle {r.idle_cpu:.0%} of a core; "
          f"RSS total {mb(total)} "
          f"(load avg {r.loadavg}); failed echo attempts {r.failures or 'none'}")  # fmt: skip
    for name, (rss, hwm) in r.rss.items():
        print(f"    {name}: RSS {mb(rss)}, peak {mb(hwm)}")
    for at, message in r.phases:
        print(f"    {at:7.2f} s  {message}")
    sys.stdout.flush()


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def completed(http: httpx.Client) -> int:
    rows = http.get("/v1/analytics/usage", timeout=60).json()["rows"]
    return sum(int(row["tasks"]) for row in rows)


TASKS_LUA = """
wrk.method = "POST"
wrk.body = '{"data": "%(payload)s"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(workspace)s"
local limit, seen = %(count)d, 0
response = function(status, headers, body)
  seen = seen + 1
  if seen == limit then
    local flag = io.open("%(flag)s", "w")
    flag:close()
    wrk.thread:stop()
  end
end
"""
"""wrk has no request count: the script stops its thread after `count` answers and drops
a flag file, on which the bench interrupts wrk (SIGINT: it prints its totals)."""

HEARTBEATS_LUA = """
local nodes = {%(nodes)s}
local i = 0
request = function()
  i = i + 1
  local n = nodes[(i %% #nodes) + 1]
  return wrk.format("POST", "/v1/nodes/" .. n[1] .. "/heartbeat",
    {["Authorization"] = "Bearer " .. n[2], ["Content-Type"] = "application/json"},
    '{"in_flight": 0}')
end
"""


def run_wrk(
    script: str, url: str, clients: int, seconds: float, flag: Path | None = None
) -> tuple[int, int, float]:
    """(requests, non-2xx, seconds) of one wrk run of `script` against `url`, for
    `seconds` or until `flag` exists."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    began = time.monotonic()
    command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, int(seconds))}s", "-s", lua.name, url]
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as wrk:
            try:
                while flag is not None and wrk.poll() is None and not flag.exists():
                    time.sleep(0.02)
                if wrk.poll() is None and flag is not None:
                    wrk.send_signal(signal.SIGINT)
                out = wrk.communicate()[0]
            finally:
                if wrk.poll() is None:
                    wrk.kill()
    finally:
        os.unlink(lua.name)
        if flag is not None:
            flag.unlink(missing_ok=True)
    took = time.monotonic() - began
    total = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
    bad = [line for line in out.splitlines() if "Non-2xx" in line]
    return total, int(bad[0].split()[-1]) if bad else 0, took


async def _aiohttp_load(requests: list[tuple[str, dict[str, str], bytes]], clients: int) -> int:
    """Fallback without wrk: `requests` (url, headers, body) from `clients` connections;
    how many were not 2xx."""
    import aiohttp

    bad = 0
    queue = iter(requests)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:

        async def worker() -> None:
            nonlocal bad
            for url, headers, body in queue:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    bad += response.status >= 300

        await asyncio.gather(*(worker() for _ in range(clients)))
    return bad


def submit(system: System, count: int, clients: int) -> tuple[int, int]:
    url = f"{system.base}/user/schedulingTask?paramUrl=echo"
    if shutil.which("wrk"):
        flag = system.data_dir.parent / "wrk-done"
        script = TASKS_LUA % {"payload": PAYLOAD, "workspace": system.bench_workspace,
                              "count": count, "flag": flag}  # fmt: skip
        total, bad, _ = run_wrk(script, url, clients, 3600, flag)
        return total, bad
    headers = {"Authorization": f"Bearer {system.bench_workspace}",
               "Content-Type": "application/json"}  # fmt: skip
    body = orjson.dumps({"data": PAYLOAD})
    return count, asyncio.run(_aiohttp_load([(url, headers, body)] * count, clients))


def build_tasks(system: System, args: argparse.Namespace) -> dict[str, float]:
    """`args.tasks` async echo tasks, in chunks so the backlog stays under `args.backlog`;
    returns once all completed."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=system.base, headers=admin, trust_env=False) as http:
        before = completed(http)
        sent = refused = 0
        began = time.monotonic()
        last_report = began
        while sent < args.tasks:
            if args.build_budget_s and time.monotonic() - began > args.build_budget_s:
                print(f"  ! the build budget of {args.build_budget_s:.0f} s is spent: "
                      f"{sent:,} tasks, not {args.tasks:,}", flush=True)  # fmt: skip
                args.tasks = sent
                while completed(http) - before < sent:
                    time.sleep(1.0)
                break
            chunk = min(args.chunk, args.tasks - sent)
            total, bad = submit(system, chunk, args.clients)
            sent += total - bad
            refused += bad
            done = completed(http) - before
            stalled, seen = time.monotonic(), done
            while sent - done > args.backlog - args.chunk or (sent >= args.tasks and done < sent):
                time.sleep(1.0)
                done = completed(http) - before
                if done != seen:
                    stalled, seen = time.monotonic(), done
                elif time.monotonic() - stalled > 120:
                    raise SystemExit(f"no task completed for 120 s ({done:,} of {sent:,})")
            if time.monotonic() - last_report > 30 or sent >= args.tasks:
                last_report = time.monotonic()
                took = last_report - began
                print(f"  tasks: {sent:,} accepted ({refused:,} refused), {done:,} completed, "
                      f"{took:.0f} s, {done / took:,.0f} completed/s", flush=True)  # fmt: skip
    took = time.monotonic() - began
    return {"tasks": sent, "refused": refused, "seconds": took, "rate": sent / took}


async def _register(base: str, count: int) -> list[tuple[str, str]]:
    headers = {"Authorization": f"Bearer {JOIN}"}
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base, headers=headers, trust_env=False) as http:

        async def one(n: int) -> tuple[str, str]:
            body = {"address": "0x" + f"{n:040x}", "host": "127.0.0.1", "region": "fake",
                    "gpus": [{"type": "A100", "memory_mb": 81920}]}  # fmt: skip
            async with limit:
                answer = await http.post("/v1/nodes/register", json=body, timeout=60)
            answer.raise_for_status()
            return answer.json()["node_id"], answer.json()["token"]

        return list(await asyncio.gather(*(one(n) for n in range(1, count + 1))))


def heartbeats(system: System, count: int, seconds: float, clients: int) -> dict[str, float]:
    """Register `count` fake nodes and heartbeat them round-robin, as fast as the
    machine allows, for `seconds`."""
    nodes = asyncio.run(_register(system.base, count))
    admin = {"Authorization": f"Bearer {ADMIN}"}
    ids = {node_id for node_id, _ in nodes}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # heartbeats of a node the directory has not seen fail
        listed = httpx.get(f"{system.base}/v1/nodes", headers=admin, timeout=60).json()["nodes"]
        if ids <= {n["node_id"] for n in listed}:
            break
        time.sleep(0.5)
    if shutil.which("wrk"):
        table = ",".join(f'{{"{node_id}","{token}"}}' for node_id, token in nodes)
        total, bad, took = run_wrk(HEARTBEATS_LUA % {"nodes": table}, system.base, clients,
                                   seconds)  # fmt: skip
    else:
        began = time.monotonic()
        per_round = [(f"{system.base}/v1/nodes/{node_id}/heartbeat",
                      {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                      b'{"in_flight": 0}') for node_id, token in nodes]  # fmt: skip
        total = bad = 0
        while time.monotonic() - began < seconds:
            bad += asyncio.run(_aiohttp_load(per_round, clients))
            total += len(per_round)
        took = time.monotonic() - began
    if bad:
        print(f"  ! {bad:,} heartbeats were not accepted", flush=True)
    return {"heartbeats": total - bad, "seconds": took, "rate": (total - bad) / took,
            "ended_at": time.time()}  # fmt: skip


def wait_checkpoints(system: System, interval_s: float, since: float) -> dict[str, Any]:
    """Until every checkpoint was written after `since` (wall clock) and covers the log
    to its end (a few records of the demo's own traffic aside), or 3 intervals and a bit;
    returns the log's contents as of then."""
    deadline = time.monotonic() + 3 * interval_s + 30
    while True:
        contents = log_contents(system.data_dir / "bus.sqlite3")
        points = contents["checkpoints"].values()
        covered = all(time.time() - c["age_s"] > since and c["tail"] < 50 for c in points)
        if (points and covered) or time.monotonic() > deadline:
            return contents
        time.sleep(1.0)


def print_contents(title: str, system: System, contents: dict[str, Any] | None) -> None:
    size = sizes(system.data_dir)
    print(f"\n{title}: bus.sqlite3 {mb(size['bus'])}, clickhouse/ {mb(size['clickhouse'])}")
    if contents:
        print("    records: " + ", ".join(f"{t} {n:,}" for t, n in contents["records"].items()))
        for name, c in contents["checkpoints"].items():
            print(f"    checkpoint {name}: {c['bytes'] / 1e3:,.0f} kB, written {c['age_s']:.0f} s "
                  f"ago, {c['tail']:,} records after it ({', '.join(c['topics'])})")  # fmt: skip
    sys.stdout.flush()


def system_env(args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NGPU_")}
    env.update(
        NGPU_ADMIN_TOKEN=ADMIN, NGPU_NODE_JOIN_TOKEN=JOIN, NGPU_RATE_LIMIT_PER_S="0",
        NGPU_CHECKPOINT_INTERVAL_S=str(args.checkpoint_interval_s),
        NGPU_LOG_RETENTION_HOURS=str(args.retention_hours), NGPU_TASK_TTL_S="3600",
        NGPU_LOG_LEVEL="info", NGPU_NODE_REGISTER_RATE_PER_S="0",
    )  # fmt: skip
    env.update(item.split("=", 1) for item in args.env)
    if args.code:  # another checkout of the code (the same virtualenv's packages)
        env["PYTHONPATH"] = str(Path(args.code).resolve())
    return env


def first_start(system: System) -> float:
    started = system.spawn()
    marks = system.wait_serving(started)
    print(f"\n{system.data_dir.name}: first start serving after {marks['serve']:.2f} s", flush=True)
    return float(marks["serve"])


def fresh(args: argparse.Namespace, root: Path) -> list[Restart]:
    system = System(root / "fresh", system_env(args))
    system.data_dir.mkdir()
    results = []
    try:
        first_start(system)
        system.start_bench_node()
        for how, down_s in RESTARTS:
            time.sleep(args.checkpoint_interval_s + 5)
            print_contents("fresh, before the restart", system,
                           log_contents(system.data_dir / "bus.sqlite3"))  # fmt: skip
            results.append(system.restart("fresh", how, down_s))
    finally:
        system.shutdown()
    return results


def history(args: argparse.Namespace, root: Path) -> tuple[list[Restart], dict[str, Any]]:
    """Build the history (or, with `--reuse`, start on a kept one and add heartbeats only),
    then the restarts."""
    data_dir = Path(args.reuse).resolve() if args.reuse else root / "history"
    system = System(data_dir, system_env(args))
    system.starts = len(list(data_dir.glob("up-*.log")))
    data_dir.mkdir(exist_ok=True)
    results: list[Restart] = []
    built: dict[str, Any] = {}
    try:
        first_start(system)
        system.start_bench_node()
        if args.reuse:
            records = log_contents(data_dir / "bus.sqlite3")["records"]
            built["tasks"] = {"tasks": records.get("ngpu.tasks", 0) // 3, "seconds": 0, "rate": 0}
        else:
            built["tasks"] = build_tasks(system, args)
        built["heartbeats"] = heartbeats(system, args.nodes, args.heartbeat_s, args.clients)
        hb = built["heartbeats"]
        print(f"  heartbeats: {hb['heartbeats']:,} from {args.nodes:,} nodes in "
              f"{hb['seconds']:.0f} s ({hb['rate']:,.0f}/s)", flush=True)  # fmt: skip
        # The nodes are lost (a durable event each) once their heartbeats stop.
        quiet = hb["ended_at"] + 20
        time.sleep(max(0.0, quiet - time.time()))
        contents = wait_checkpoints(system, args.checkpoint_interval_s, quiet)
        built["before"] = {**sizes(system.data_dir), **contents}
        print_contents("history, before the restart", system, contents)
        for n, (how, down_s) in enumerate(RESTARTS):
            if n:
                time.sleep(args.checkpoint_interval_s + 5)
                print_contents("history, before the restart", system,
                               log_contents(system.data_dir / "bus.sqlite3"))  # fmt: skip
            results.append(system.restart("history", how, down_s))
        if args.skip_liveness_wait:
            return results, built
        # The liveness window: heartbeats go 5 min after their publish, at the next prune.
        pruned_by = hb["ended_at"] + LIVENESS_S + PRUNE_EVERY_S + 15
        time.sleep(max(0.0, pruned_by - time.time()))
        contents = log_contents(system.data_dir / "bus.sqlite3")
        built["liveness_pruned"] = {**sizes(system.data_dir), **contents}
        print_contents("history, heartbeats past the liveness window", system, contents)
        time.sleep(args.checkpoint_interval_s + 5)
        results.append(system.restart("history, liveness pruned", "SIGTERM"))
        if args.retention_wait_s:
            built["retention"] = wait_retention(system, args, built["tasks"])
    finally:
        system.shutdown()
    return results, built


def wait_retention(system: System, args: argparse.Namespace, tasks: dict[str, float]) -> Any:
    """Until the task topic's records are past retention and pruned (or the wait ends)."""
    deadline = time.monotonic() + args.retention_wait_s
    contents = log_contents(system.data_dir / "bus.sqlite3")
    while time.monotonic() < deadline:
        time.sleep(60)
        contents = log_contents(system.data_dir / "bus.sqlite3")
        left = contents["records"].get("ngpu.tasks", 0)
        print_contents("history, waiting for retention", system, contents)
        if left < tasks["tasks"] / 100:
            break
    return {**sizes(system.data_dir), **contents}


def after_retention(args: argparse.Namespace) -> tuple[list[Restart], dict[str, Any]]:
    """A history data dir kept by an earlier run (`--keep`), started again once its tasks
    are older than `--retention-hours`: the prune at the start deletes them. Its size
    before and after, the start and one SIGTERM restart after it."""
    data_dir = Path(args.after_retention).resolve()
    system = System(data_dir, system_env(args))
    system.starts = len(list(data_dir.glob("up-*.log")))
    bus = data_dir / "bus.sqlite3"
    built: dict[str, Any] = {"before": {**sizes(data_dir), **log_contents(bus)}}
    print_contents("kept data dir, before the start", system, log_contents(bus))
    results: list[Restart] = []
    try:
        results.append(system.restart("kept history, tasks past retention", "start"))
        deadline = time.monotonic() + 900
        while b"retention deleted" not in system.log_path.read_bytes():
            if time.monotonic() > deadline:
                raise SystemExit("no prune within 900 s")
            time.sleep(1.0)
        built["retention"] = {**sizes(data_dir), **log_contents(bus)}
        print_contents("kept data dir, after the prune", system, log_contents(bus))
        time.sleep(args.checkpoint_interval_s + 5)
        results.append(system.restart("kept history, tasks pruned", "SIGTERM"))
    finally:
        system.shutdown()
    return results, built


def code_version(checkout: str) -> str:
    """The commit of `checkout` and whether its code differs from it (read-only git)."""
    git = ["git", "-C", checkout]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        return checkout
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "services", "events",
                            "projections"]).returncode  # fmt: skip
    return head.stdout.strip() + (" with uncommitted changes" if dirty else "")


def summary(restarts: list[Restart], built: dict[str, Any], args: argparse.Namespace) -> None:
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"\nCode: {code_version(args.code or str(REPO))}")
    print(f"Machine: {machine}, Python {platform.python_version()}, "
          f"checkpoint interval {args.checkpoint_interval_s} s, retention "
          f"{args.retention_hours} h")  # fmt: skip
    if "tasks" in built:
        t, hb = built["tasks"], built["heartbeats"]
        print(f"History: {t['tasks']:,} tasks in {t['seconds']:.0f} s ({t['rate']:,.0f}/s "
              f"submitted and completed); {hb['heartbeats']:,} heartbeats from "
              f"{args.nodes:,} nodes in {hb['seconds']:.0f} s ({hb['rate']:,.0f}/s)")  # fmt: skip
    print()
    print(
        "| system | stop | stop took | listening | ready | demo serving | bench serving | "
        "CPU until serving | idle CPU | RSS ngpu up (peak) | agent | sample app |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in restarts:
        up_rss, up_hwm = r.rss.get("ngpu up", (0, 0))
        print(f"| {r.scenario} | {r.how} | {r.stop_s:.1f} s | {r.listen_s:.2f} s | "
              f"{r.ready_s:.2f} s | {r.serve_s:.2f} s | {r.serve_bench_s:.2f} s | "
              f"{r.cpu_s:.1f} s | {r.idle_cpu:.0%} | "
              f"{mb(up_rss)} ({mb(up_hwm)}) | {mb(r.rss.get('node agent', (0, 0))[0])} | "
              f"{mb(r.rss.get('sample app', (0, 0))[0])} |")  # fmt: skip
    print()
    print("| data dir | bus.sqlite3 | clickhouse/ | records in the log |")
    print("|---|---:|---:|---|")
    for key, name in (("before", "history built, at the restart"),
                      ("liveness_pruned", "heartbeats past the liveness window"),
                      ("retention", "tasks past retention")):  # fmt: skip
        if key in built:
            c = built[key]
            records = ", ".join(f"{t.removeprefix('ngpu.')} {n:,}" for t, n in c["records"].items())
            print(f"| {name} | {mb(c['bus'])} | {mb(c['clickhouse'])} | {records} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=20_000, help="tasks per wrk run")
    parser.add_argument("--backlog", type=int, default=40_000, help="most tasks not completed")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--build-budget-s", type=float, default=0,
                        help="stop submitting after this long (0: no limit)")  # fmt: skip
    parser.add_argument("--heartbeat-s", type=float, default=330)
    parser.add_argument("--checkpoint-interval-s", type=float, default=10)
    parser.add_argument("--retention-hours", type=float, default=1)
    parser.add_argument("--retention-wait-s", type=float, default=0)
    parser.add_argument("--skip-fresh", action="store_true")
    parser.add_argument("--skip-history", action="store_true")
    parser.add_argument("--skip-liveness-wait", action="store_true")
    parser.add_argument("--reuse", default="", metavar="DIR",
                        help="a history data dir kept by --keep: no tasks are added")  # fmt: skip
    parser.add_argument(
        "--after-retention",
        default="",
        metavar="DIR",
        help="only start the kept history data dir DIR again (see after_retention)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the data dirs")
    parser.add_argument("--code", default="", help="run the system from this checkout")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NGPU_X=VALUE",
        help="another setting of the system under test (repeatable)",
    )
    args = parser.parse_args()
    # A SIGTERM (`timeout`, say) unwinds through the `finally`s that stop the systems.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    root = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    print(f"data dirs under {root}", flush=True)
    restarts: list[Restart] = []
    built: dict[str, Any] = {}
    try:
        if args.after_retention:
            restarts, built = after_retention(args)
            args.skip_fresh = args.skip_history = True
        if not args.skip_fresh:
            restarts += fresh(args, root)
        if not args.skip_history:
            more, built = history(args, root)
            restarts += more
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    summary(restarts, built, args)


if __name__ == "__main__":
    main()
