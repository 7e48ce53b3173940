"""Readiness: a deployment is ready when its health path answers 2xx on its host port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from services.nodeagent.runtimes.supervise import RunOutcome


def health_client(
    transport: httpx.AsyncBaseTransport | None, request_timeout_s: float
) -> httpx.AsyncClient:
    """The client health checks go through. `trust_env=False`: a proxy configured in the
    agent's environment must never see requests meant for this host's own ports."""
    return httpx.AsyncClient(transport=transport, timeout=request_timeout_s, trust_env=False)


async def wait_healthy(client: httpx.AsyncClient, url: str, interval_s: float) -> None:
    """Return once `GET url` answers 2xx. Polls every `interval_s` and never gives up:
    the caller bounds the wait (and races it against the deployment exiting)."""
    while True:
        try:
            response = await client.get(url)
            if response.is_success:
                return
        except httpx.HTTPError:
            pass  # not listening yet, or busy starting: poll again
        await asyncio.sleep(interval_s)


async def watch_run(
    exited: Coroutine[Any, Any, str],
    stop_requested: asyncio.Event,
    healthy: Coroutine[Any, Any, None],
    *,
    health_timeout_s: float,
    url: str,
    on_ready: Callable[[], None],
) -> RunOutcome:
    """Follow one run: wait for `healthy`, `exited` (which describes how the run ended)
    or a stop, at most `health_timeout_s`; once healthy call `on_ready`, then wait for
    exit or stop. Returns how the run ended; the caller then disposes of what is left."""
    exit_task = asyncio.create_task(exited)
    stop_task = asyncio.create_task(stop_requested.wait())
    health_task = asyncio.create_task(healthy)
    try:
        await asyncio.wait(
            (exit_task, stop_task, health_task),
            timeout=health_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if stop_task.done():
            return RunOutcome("stopped")
        if exit_task.done():
            return RunOutcome(f"{exit_task.result()} before becoming healthy")
        if not health_task.done():
            return RunOutcome(f"no 2xx from {url} within {health_timeout_s:g} s")
        loop = asyncio.get_running_loop()
        ready_at = loop.time()
        on_ready()
        await asyncio.wait((exit_task, stop_task), return_when=asyncio.FIRST_COMPLETED)
        ready_for = loop.time() - ready_at
        return RunOutcome("stopped" if stop_task.done() else exit_task.result(), ready_for)
    finally:
        for task in (exit_task, stop_task, health_task):
            task.cancel()
