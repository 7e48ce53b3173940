"""Start the sample app as a real child process on a free port of 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[3]
DEADLINE_S = 20.0  # only to avoid hangs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(base_url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the sample app exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/health", trust_env=False).status_code == 200:
                return
        time.sleep(0.02)
    raise AssertionError("the sample app did not become healthy")


@contextlib.contextmanager
def sampleapp(
    env: Mapping[str, str] | None = None, *, port_from_env: bool = False
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run `python -m services.sampleapp --quiet` on a free port, given by `--port` or,
    with `port_from_env`, by `PORT`; yield the process and its base URL once /health
    answers; terminate it (SIGTERM) after."""
    port = free_port()
    child_env = {"PATH": os.environ.get("PATH", ""), **(env or {})}
    argv = ["--quiet"]
    if port_from_env:
        child_env["PORT"] = str(port)
    else:
        argv += ["--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.sampleapp", *argv],
        cwd=REPO_ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, proc)
        yield proc, base_url
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
