"""The node API: registration, per-node tokens, heartbeats, assignments, reports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from events import DeploymentRequested, NodeHeartbeat, NodeRegistered, topics
from services.bus import decode_record, publish_events
from services.certs import proxy_certificate
from tests.services.ingress.conftest import ControlPlane
from tests.support.disk import fill_disk, make_room

NODE: dict[str, Any] = {
    "address": "0x" + "ab" * 20,
    "host": "127.0.0.1",
    "gpus": [{"type": "NVIDIA GeForce RTX 4090", "memory_mb": 24564}],
    "region": "eu-1",
    "runtime": "process",
}

CERT = proxy_certificate()
NOT_X509 = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"


async def _register(cp: ControlPlane, **changes: Any) -> dict[str, Any]:
    response = await cp.http.post("/v1/nodes/register", json={**NODE, **changes}, headers=cp.join())
    assert response.status_code == 201, response.text
    return dict(response.json())


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _assign(cp: ControlPlane, node_id: str, deployment_id: str) -> None:
    records = await publish_events(cp.bus, [DeploymentRequested(
        deployment_id=deployment_id, node_id=node_id, workspace_id="w1", image="img",
        command=("python", "-m", "services.sampleapp"), ports=(8080,), gpu_type="RTX4090",
        gpu_count=1,
    )])  # fmt: skip
    await cp.context.follower.wait_for(records)


async def test_register_stores_only_a_token_digest(control_plane: ControlPlane) -> None:
    node = await _register(control_plane)
    assert node["node_id"].startswith("node-") and len(node["token"]) >= 32
    events = [decode_record(r).event async for r in control_plane.bus.replay([topics.NODES])]
    registered = [e for e in events if isinstance(e, NodeRegistered)]
    assert len(registered) == 1
    assert registered[0].gpus[0].type == "RTX4090"
    assert node["token"] not in repr(registered[0])


async def test_listing_shows_the_node_healthy(control_plane: ControlPlane) -> None:
    node = await _register(control_plane)
    await _assign(control_plane, node["node_id"], "dep-1")
    listing = (await control_plane.http.get("/v1/nodes", headers=control_plane.admin())).json()
    (entry,) = listing["nodes"]
    assert entry["node_id"] == node["node_id"] and entry["healthy"] is True
    assert entry["gpus"] == [{"type": "RTX4090", "memory_mb": 24564}]
    assert entry["deployments"][0]["state"] == "requested"


async def test_register_records_the_proxy_certificate_and_its_pin(
    control_plane: ControlPlane,
) -> None:
    # The pin is the control plane's own digest of what it recorded, not the agent's word.
    node = await _register(control_plane, proxy_cert="\n" + CERT.pem + "\n")
    events = [decode_record(r).event async for r in control_plane.bus.replay([topics.NODES])]
    (registered,) = [e for e in events if isinstance(e, NodeRegistered)]
    assert registered.proxy_cert == CERT.pem
    assert registered.proxy_cert_sha256 == CERT.sha256
    listing = (await control_plane.http.get("/v1/nodes", headers=control_plane.admin())).json()
    (entry,) = listing["nodes"]
    assert entry["node_id"] == node["node_id"]
    assert (entry["proxy_cert"], entry["proxy_cert_sha256"]) == (CERT.pem, CERT.sha256)


async def test_a_node_without_a_certificate_is_recorded_as_plain_http(
    control_plane: ControlPlane,
) -> None:
    await _register(control_plane)
    events = [decode_record(r).event async for r in control_plane.bus.replay([topics.NODES])]
    (registered,) = [e for e in events if isinstance(e, NodeRegistered)]
    assert (registered.proxy_cert, registered.proxy_cert_sha256) == ("", "")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"address": "0x123"}, "address"),
        ({"host": "http://evil.example/"}, "host"),
        ({"host": "10.0.0.1:8080"}, "host"),
        ({"runtime": "vm"}, "runtime"),
        ({"gpus": [{"type": "", "memory_mb": 1}]}, "gpus.0.type"),
        ({"proxy_cert": "not a certificate"}, "proxy_cert"),
        ({"proxy_cert": CERT.pem + CERT.pem}, "proxy_cert"),  # one certificate, not a chain
        ({"proxy_cert": CERT.pem.replace("CERTIFICATE", "PRIVATE KEY")}, "proxy_cert"),
        ({"proxy_cert": NOT_X509}, "proxy_cert"),
    ],
)
async def test_bad_registrations_name_the_field(
    control_plane: ControlPlane, changes: dict[str, Any], field: str
) -> None:
    response = await control_plane.http.post(
        "/v1/nodes/register", json={**NODE, **changes}, headers=control_plane.join()
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_registration_needs_the_join_token(control_plane: ControlPlane) -> None:
    for headers in ({}, _as("nope"), control_plane.admin()):
        response = await control_plane.http.post("/v1/nodes/register", json=NODE, headers=headers)
        assert response.status_code == 401


async def test_node_calls_need_that_nodes_token(control_plane: ControlPlane) -> None:
    one, two = await _register(control_plane), await _register(control_plane)
    path = f"/v1/nodes/{one['node_id']}/heartbeat"
    assert (
        await control_plane.http.post(path, json={}, headers=_as(one["token"]))
    ).status_code == 200
    for token in (two["token"], control_plane.join()["Authorization"][7:], "x"):
        response = await control_plane.http.post(path, json={}, headers=_as(token))
        assert response.status_code == 401
    unknown = await control_plane.http.post(
        "/v1/nodes/node-unknown/heartbeat", json={}, headers=_as(one["token"])
    )
    assert unknown.status_code == 401


async def test_a_heartbeat_is_liveness_not_history(control_plane: ControlPlane) -> None:
    node = await _register(control_plane)
    response = await control_plane.http.post(
        f"/v1/nodes/{node['node_id']}/heartbeat", json={"in_flight": 3}, headers=_as(node["token"])
    )
    assert response.status_code == 200
    liveness = [decode_record(r).event async for r in control_plane.bus.replay([topics.LIVENESS])]
    assert NodeHeartbeat(node["node_id"], 3) in liveness
    history = [decode_record(r).event
               async for r in control_plane.bus.replay(topics.HISTORY_TOPICS)]  # fmt: skip
    assert not any(isinstance(event, NodeHeartbeat) for event in history)


@pytest.mark.parametrize("in_flight", [-1, 2**64, 22487116915521858989109405724704768])
async def test_a_heartbeat_out_of_range_is_refused(
    control_plane: ControlPlane, in_flight: int
) -> None:
    # Found by schemathesis: an integer past 64 bits failed to encode into the event (500).
    node = await _register(control_plane)
    path = f"/v1/nodes/{node['node_id']}/heartbeat"
    body = {"in_flight": in_flight}
    response = await control_plane.http.post(path, json=body, headers=_as(node["token"]))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "in_flight"


async def test_assignments_long_poll_wakes_on_a_new_deployment(control_plane: ControlPlane) -> None:
    node = await _register(control_plane)
    path = f"/v1/nodes/{node['node_id']}/assignments"
    first = (await control_plane.http.get(path, headers=_as(node["token"]))).json()
    assert first["deployments"] == []
    polling = asyncio.create_task(control_plane.http.get(
        path, params={"etag": first["etag"], "wait": 20}, headers=_as(node["token"])
    ))  # fmt: skip
    await asyncio.sleep(0.2)
    assert not polling.done()
    await _assign(control_plane, node["node_id"], "dep-1")
    second = (await asyncio.wait_for(polling, 10)).json()
    assert second["etag"] != first["etag"]
    assert [d["deployment_id"] for d in second["deployments"]] == ["dep-1"]
    assert second["deployments"][0]["command"] == ["python", "-m", "services.sampleapp"]


async def test_deployment_reports_move_the_state(control_plane: ControlPlane) -> None:
    node = await _register(control_plane)
    await _assign(control_plane, node["node_id"], "dep-1")
    path = f"/v1/nodes/{node['node_id']}/deployments/dep-1/status"
    auth = _as(node["token"])
    bad = await control_plane.http.post(
        path, json={"state": "ready", "host_ports": {"9999": 1}}, headers=auth
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "host_ports"
    ok = await control_plane.http.post(
        path, json={"state": "ready", "host_ports": {"8080": 41234}}, headers=auth
    )
    assert ok.status_code == 204
    missing = await control_plane.http.post(
        f"/v1/nodes/{node['node_id']}/deployments/dep-x/status",
        json={"state": "starting"},
        headers=auth,
    )
    assert missing.status_code == 404
    listing = (await control_plane.http.get("/v1/nodes", headers=control_plane.admin())).json()
    deployment = listing["nodes"][0]["deployments"][0]
    assert deployment["state"] == "ready" and deployment["ports"] == {"8080": 41234}


async def test_a_full_disk_answers_503_to_the_nodes_until_there_is_room(
    control_plane: ControlPlane,
) -> None:
    node = await _register(control_plane)
    heartbeat = f"/v1/nodes/{node['node_id']}/heartbeat"
    await fill_disk(control_plane.bus)
    for refused in (
        await control_plane.http.post(heartbeat, json={"in_flight": 1}, headers=_as(node["token"])),
        await control_plane.http.post(
            "/v1/nodes/register", json={**NODE, "address": "0x" + "cd" * 20},
            headers=control_plane.join(),
        ),
    ):  # fmt: skip
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "unavailable"
    listing = await control_plane.http.get("/v1/nodes", headers=control_plane.admin())
    assert [n["node_id"] for n in listing.json()["nodes"]] == [node["node_id"]]
    await make_room(control_plane.bus)
    accepted = await control_plane.http.post(heartbeat, json={}, headers=_as(node["token"]))
    assert accepted.status_code == 200, accepted.text
