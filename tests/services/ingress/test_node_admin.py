"""Operators and nodes among strangers: registered hosts are checked, registration is
limited per client IP, and nodes can be drained and revoked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from events import NodeDrained, NodeRevoked, topics
from services.bus import EmbeddedBus, decode_record
from services.hosts import HostPolicy
from services.ingress import DirectoryFollower, IngressContext
from services.ingress.ratelimit import RateLimiter
from services.settings import Settings
from tests.services.ingress.conftest import ControlPlane
from tests.services.ingress.test_nodes_api import NODE, _as, _assign, _register

PUBLIC = "8.8.8.8"


async def _try_register(cp: ControlPlane, **changes: Any) -> Any:
    return await cp.http.post("/v1/nodes/register", json={**NODE, **changes}, headers=cp.join())


def _strict(cp: ControlPlane, allow: tuple[str, ...] = ()) -> None:
    """As if the control plane listened on 0.0.0.0 (loopback not allowed)."""
    cp.context.hosts = HostPolicy.from_settings(allow, "0.0.0.0")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1", "::1", "169.254.169.254", "fe80::1", "224.0.0.1", "0.0.0.0", "::",
        "10.0.0.7", "172.16.5.4", "192.168.0.10", "fd00:ec2::254", "100.100.100.200",
        "240.0.0.1", "localhost",
    ],
)  # fmt: skip
async def test_a_refused_host_answers_422_naming_host(
    control_plane: ControlPlane, host: str
) -> None:
    _strict(control_plane)
    response = await _try_register(control_plane, host=host)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "host"
    events = [decode_record(r).event async for r in control_plane.bus.replay([topics.NODES])]
    assert events == []  # nothing registered


async def test_a_global_address_registers(control_plane: ControlPlane) -> None:
    _strict(control_plane)
    assert (await _try_register(control_plane, host=PUBLIC)).status_code == 201


@pytest.mark.parametrize(
    ("allow", "host", "status"),
    [
        (("10.0.0.0/8",), "10.0.0.7", 201),
        (("10.0.0.0/8",), "192.168.0.10", 422),
        (("127.0.0.0/8",), "127.0.0.1", 201),
        (("127.0.0.0/8",), "localhost", 201),
        (("169.254.169.254/32",), "169.254.169.254", 201),
    ],
)
async def test_the_allow_list_admits_hosts(
    control_plane: ControlPlane, allow: tuple[str, ...], host: str, status: int
) -> None:
    _strict(control_plane, allow)
    assert (await _try_register(control_plane, host=host)).status_code == status


@pytest.mark.parametrize(("bind", "status"), [("127.0.0.1", 201), ("0.0.0.0", 422)])
async def test_loopback_registers_only_when_the_control_plane_listens_on_loopback(
    tmp_path: Path, bind: str, status: int
) -> None:
    settings = Settings(data_dir=tmp_path, host=bind)
    bus = EmbeddedBus(settings.bus_path, poll_interval_s=0.05)
    context = IngressContext(settings, bus, DirectoryFollower(bus), "a", "j")
    assert context.hosts is not None
    assert (context.hosts.refused_kind("127.0.0.1") is None) is (status == 201)
    assert context.hosts.refused_kind("10.0.0.1") == "private"


async def test_the_default_test_cluster_registers_loopback_and_localhost(
    control_plane: ControlPlane,
) -> None:
    # The fixture's settings leave NGPU_HOST at 127.0.0.1, as `ngpu up` and the demo do.
    assert (await _try_register(control_plane, host="127.0.0.1")).status_code == 201
    assert (await _try_register(control_plane, host="localhost")).status_code == 201


def test_the_allow_list_setting_is_validated(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, node_host_allow=["10.0.0.0/8"]).node_host_allow
    with pytest.raises(ValueError, match="NGPU_NODE_HOST_ALLOW"):
        Settings(data_dir=tmp_path, node_host_allow=["not-a-cidr"])


async def test_registration_is_rate_limited_per_client_ip(control_plane: ControlPlane) -> None:
    control_plane.context.register_limiter = RateLimiter(rate_per_s=0.001, burst=3)
    bad = await control_plane.http.post("/v1/nodes/register", json=NODE, headers=_as("wrong"))
    assert bad.status_code == 401  # a wrong join token is counted too
    assert (await _try_register(control_plane)).status_code == 201
    assert (await _try_register(control_plane)).status_code == 201
    limited = await _try_register(control_plane)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    nodes = (await control_plane.http.get("/v1/nodes", headers=control_plane.admin())).json()
    assert len(nodes["nodes"]) == 2


def test_the_registration_limit_comes_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, node_register_rate_per_s=2, node_register_burst=5)
    bus = EmbeddedBus(settings.bus_path)
    context = IngressContext(settings, bus, DirectoryFollower(bus), "a", "j")
    assert context.register_limiter is not None
    assert (context.register_limiter.rate_per_s, context.register_limiter.burst) == (2, 5)


async def _entry(cp: ControlPlane, node_id: str) -> dict[str, Any]:
    listing = (await cp.http.get("/v1/nodes", headers=cp.admin())).json()
    return next(n for n in listing["nodes"] if n["node_id"] == node_id)


async def _node_events(cp: ControlPlane) -> list[Any]:
    return [decode_record(r).event async for r in cp.bus.replay([topics.NODES])]


async def test_drain_emits_node_drained_and_shows_in_the_listing(
    control_plane: ControlPlane,
) -> None:
    cp = control_plane
    node = await _register(cp)
    node_id = node["node_id"]
    assert (await _entry(cp, node_id))["draining"] is False
    response = await cp.http.post(f"/v1/nodes/{node_id}/drain", headers=cp.admin())
    assert response.status_code == 200, response.text
    assert response.json()["draining"] is True and response.json()["healthy"] is False
    again = await cp.http.post(f"/v1/nodes/{node_id}/drain", headers=cp.admin())
    assert again.status_code == 200  # idempotent: one event
    assert [e for e in await _node_events(cp) if isinstance(e, NodeDrained)] == [
        NodeDrained(node_id=node_id)
    ]
    entry = await _entry(cp, node_id)
    assert (entry["draining"], entry["revoked"], entry["lost"]) == (True, False, False)
    # A draining node still heartbeats and reports: what it runs finishes.
    beat = await cp.http.post(f"/v1/nodes/{node_id}/heartbeat", headers=_as(node["token"]))
    assert beat.status_code == 200


@pytest.mark.parametrize(("method", "suffix"), [("POST", "/drain"), ("DELETE", "")])
async def test_drain_and_revoke_need_the_admin_token_and_a_known_node(
    control_plane: ControlPlane, method: str, suffix: str
) -> None:
    cp = control_plane
    node = await _register(cp)
    url = f"/v1/nodes/{node['node_id']}{suffix}"
    for headers in (cp.join(), _as(node["token"]), {}):
        assert (await cp.http.request(method, url, headers=headers)).status_code == 401
    missing = await cp.http.request(method, f"/v1/nodes/node-nope{suffix}", headers=cp.admin())
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "node_id"
    assert len(await _node_events(cp)) == 1  # nothing but the registration


async def test_revoke_refuses_the_token_at_once_and_loses_the_node(
    control_plane: ControlPlane,
) -> None:
    cp = control_plane
    node = await _register(cp)
    node_id, token = node["node_id"], node["token"]
    await _assign(cp, node_id, "dep-1")
    beat = await cp.http.post(f"/v1/nodes/{node_id}/heartbeat", headers=_as(token))
    assert beat.status_code == 200
    response = await cp.http.delete(f"/v1/nodes/{node_id}", headers=cp.admin())
    assert response.status_code == 204
    # The very next request with its token is refused: no wait for the log.
    for method, path in [
        ("POST", f"/v1/nodes/{node_id}/heartbeat"),
        ("GET", f"/v1/nodes/{node_id}/assignments"),
        ("POST", f"/v1/nodes/{node_id}/deployments/dep-1/status"),
    ]:
        refused = await cp.http.request(method, path, headers=_as(token), json={"state": "ready"})
        assert refused.status_code == 401, (path, refused.text)
    entry = await _entry(cp, node_id)
    assert (entry["revoked"], entry["lost"], entry["healthy"]) == (True, True, False)
    assert [d["state"] for d in entry["deployments"]] == ["stopped"]
    assert (await cp.http.delete(f"/v1/nodes/{node_id}", headers=cp.admin())).status_code == 204
    revoked = [e for e in await _node_events(cp) if isinstance(e, NodeRevoked)]
    assert [e.node_id for e in revoked] == [node_id]  # idempotent: one event
