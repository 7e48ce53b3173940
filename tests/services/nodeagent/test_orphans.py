"""A replica does not outlive its node agent, even one killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = (
        Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "X"
    )
    return status not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_replica_dies_with_a_sigkilled_agent(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, str(HERE / "runtime_parent.py"), str(tmp_path)], stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    try:
        port, pid = parent.stdout.readline().decode().split()
        app = int(pid)
        assert _alive(app)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(app) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(app), f"the replica (pid {app}, port {port}) outlived its agent"
