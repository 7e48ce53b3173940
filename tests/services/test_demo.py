"""`ngpu up --demo` waits for the gateway to be ready (`/readyz`) however long its
catch-up takes, saying what it waits for, then for the sample replica, within a guard
that names the replica's state. Against a plain function standing in for the gateway."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from services import demo
from services.demo import DemoError


def _gateway(readyz: list[int], states: list[str]) -> httpx.MockTransport:
    """`/readyz` answers the next status of `readyz` (200 once they run out); `/v1/nodes`
    shows the demo workspace's replica in the next state of `states`."""
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path == "/readyz":
            if readyz:
                readyz.pop(0)
                return httpx.Response(503, json={"ready": False, "waiting_for": ["directory"]})
            return httpx.Response(200, json={"ready": True})
        state = states.pop(0) if len(states) > 1 else states[0]
        deployment = {"workspace_id": "ws", "state": state, "ports": {}}
        return httpx.Response(200, json={"nodes": [{"deployments": [deployment]}]})

    transport = httpx.MockTransport(handle)
    transport.asked = asked  # type: ignore[attr-defined]
    return transport


async def test_the_demo_waits_for_readiness_and_says_what_it_waits_for(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(demo, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(demo, "POLL_S", 0.0)
    transport = _gateway(readyz=[503] * 5, states=["ready"])
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        with caplog.at_level(logging.INFO, logger="services.demo"):
            await demo._wait_caught_up(http)
    assert transport.asked == ["/readyz"] * 6  # type: ignore[attr-defined]
    said = [r.getMessage() for r in caplog.records]
    assert said == ["demo: waiting for the gateway to catch up with the log (directory)"] * 5


async def test_the_replica_is_waited_for_until_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "POLL_S", 0.0)
    transport = _gateway(readyz=[], states=["starting", "starting", "ready"])
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        await demo._wait_replica(http, "ws", Path("agent.log"))
    assert transport.asked == ["/v1/nodes"] * 3  # type: ignore[attr-defined]


async def test_a_replica_that_never_gets_ready_is_reported_with_its_state() -> None:
    transport = _gateway(readyz=[], states=["failed"])
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        with pytest.raises(DemoError, match=r"not ready after 0 s \(its state: failed\).*a\.log"):
            await demo._wait_replica(http, "ws", Path("a.log"), guard_s=0)
