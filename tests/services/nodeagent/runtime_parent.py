"""Child process for the orphan test: runs the sample app on the process runtime, prints
the app's pid once it is ready, then waits to be killed.

Usage: python runtime_parent.py LOG_DIR
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from services.nodeagent.runtimes import ProcessRuntime, ProcessRuntimeConfig, StatusReport
from services.nodeagent.runtimes.base import Assignment


async def main(log_dir: Path) -> None:
    ready = asyncio.Event()

    def on_status(report: StatusReport) -> None:
        if report.state == "ready":
            ready.set()

    runtime = ProcessRuntime(ProcessRuntimeConfig(log_dir=log_dir), on_status)
    spec = Assignment(
        deployment_id="dep-orphan", node_id="node-x",
        image="sample", command=(sys.executable, "-m", "services.sampleapp"),
        ports=(8080,), gpu_type="RTX4090", gpu_count=1,
    )  # fmt: skip
    handle = await runtime.start(spec)
    await asyncio.wait_for(ready.wait(), 30)
    port = handle.host_ports["8080"]
    async with httpx.AsyncClient(trust_env=False) as http:
        pid = (await http.get(f"http://127.0.0.1:{port}/whoami")).json()["pid"]
    print(port, pid, flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
