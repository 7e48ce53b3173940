"""Helpers for the node agent tests: a list-backed status sink that can be awaited, deployment
specs, a process runtime configured for quick, bounded tests, and process probes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from services.nodeagent.runtimes import (
    Backoff,
    ProcessRuntimeConfig,
    RestartPolicy,
    StatusReport,
)
from services.nodeagent.runtimes.base import Assignment

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLEAPP = (sys.executable, "-m", "services.sampleapp", "--quiet")
DEADLINE_S = 20.0  # only to avoid hangs; nothing asserts on time
POLL_S = 0.05
T = TypeVar("T")


class Reports:
    """A status callback that keeps every report and lets a test await one."""

    def __init__(self) -> None:
        self.items: list[StatusReport] = []
        self._changed = asyncio.Event()

    def __call__(self, report: StatusReport) -> None:
        self.items.append(report)
        self._changed.set()

    def states(self, deployment_id: str) -> list[str]:
        return [r.state for r in self.items if r.deployment_id == deployment_id]

    async def wait_for(self, predicate: Callable[[StatusReport], bool]) -> StatusReport:
        """The first report (oldest first) matching `predicate`, waiting for it."""
        async with asyncio.timeout(DEADLINE_S):
            while True:
                for report in self.items:
                    if predicate(report):
                        return report
                self._changed.clear()
                await self._changed.wait()


def deployment(
    deployment_id: str = "dep-1",
    command: tuple[str, ...] = SAMPLEAPP,
    ports: tuple[int, ...] = (8080,),
    **fields: Any,
) -> Assignment:
    values: dict[str, Any] = {
        "deployment_id": deployment_id,
        "node_id": "node-1",
        "image": "ngpu/sampleapp:latest",
        "command": command,
        "ports": ports,
        "gpu_type": "RTX4090",
        "gpu_count": 1,
    }
    values.update(fields)
    return Assignment(**values)


def quick_config(tmp_path: Path, **overrides: Any) -> ProcessRuntimeConfig:
    values: dict[str, Any] = {
        "log_dir": tmp_path / "logs",
        "cwd": REPO_ROOT,
        "health_timeout_s": DEADLINE_S,
        "health_interval_s": 0.05,
        "stop_grace_s": 3.0,
        "restart": RestartPolicy(backoff=Backoff(initial_s=0.05, factor=2.0, max_s=0.2)),
    }
    values.update(overrides)
    return ProcessRuntimeConfig(**values)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by its parent) is dead."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


async def eventually(probe: Callable[[], T | None], what: str) -> T:
    """Poll `probe` until it returns something other than None; fail after `DEADLINE_S`."""
    for _ in range(int(DEADLINE_S / POLL_S)):
        value = probe()
        if value is not None:
            return value
        await asyncio.sleep(POLL_S)
    pytest.fail(f"gave up waiting for {what}")


async def wait_dead(pid: int) -> None:
    await eventually(lambda: True if not pid_alive(pid) else None, f"pid {pid} to die")


def _text(path: Path) -> str | None:
    return path.read_text().strip() or None if path.exists() else None


async def wait_file(path: Path) -> str:
    """The stripped content of `path`, once it exists and is not empty."""
    return await eventually(lambda: _text(path), f"{path} to be written")
