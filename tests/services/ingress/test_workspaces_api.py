"""The management API for workspaces: what it stores, and each bad input's 4xx."""

from __future__ import annotations

import re
from typing import Any

import pytest

from events import WorkspaceRegistered, topics
from services.bus import decode_record
from tests.services.ingress.conftest import ControlPlane

VALID: dict[str, Any] = {
    "name": "sd-img2img",
    "image": "ghcr.io/acme/sd:1.0",
    "command": "python -m app --port $PORT",
    "env": {"MODEL": "sd15"},
    "gpu": {"type": "NVIDIA GeForce RTX 4090", "count": 1},
    "ports": [8080],
    "health_path": "/health",
    "replicas": {"min": 1, "max": 4},
    "timeout_s": 600,
}


async def test_register_returns_credentials_and_publishes_the_event(
    control_plane: ControlPlane,
) -> None:
    response = await control_plane.http.post(
        "/v1/workspaces", json=VALID, headers=control_plane.admin()
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert re.fullmatch(r"[1-9][0-9]{19}", body["workspace_id"])
    assert re.fullmatch(r"ts-[0-9a-f-]{36}", body["userkey"])
    assert body["gpu"] == {"type": "RTX4090", "count": 1}
    assert body["command"] == ["sh", "-c", "python -m app --port $PORT"]
    events = [decode_record(r).event async for r in control_plane.bus.replay([topics.WORKSPACES])]
    assert len(events) == 1 and isinstance(events[0], WorkspaceRegistered)
    assert events[0].workspace_id == body["workspace_id"]
    read = await control_plane.http.get(
        f"/v1/workspaces/{body['workspace_id']}", headers=control_plane.admin()
    )
    # The webhook secret is answered at creation only.
    assert body["webhook_secret"].startswith("whsec_")
    assert read.status_code == 200 and read.json() == {
        k: v for k, v in body.items() if k != "webhook_secret"
    }


async def test_workspace_ids_differ(control_plane: ControlPlane) -> None:
    ids = set()
    for i in range(5):
        response = await control_plane.http.post(
            "/v1/workspaces", json={**VALID, "name": f"w{i}"}, headers=control_plane.admin()
        )
        ids.add(response.json()["workspace_id"])
    assert len(ids) == 5


async def test_patch_and_delete(control_plane: ControlPlane) -> None:
    created = (
        await control_plane.http.post("/v1/workspaces", json=VALID, headers=control_plane.admin())
    ).json()
    path = f"/v1/workspaces/{created['workspace_id']}"
    patched = await control_plane.http.patch(
        path,
        json={"replicas": {"min": 2, "max": 3}, "timeout_s": 30},
        headers=control_plane.admin(),
    )
    assert patched.status_code == 200, patched.text
    replicas = patched.json()["replicas"]
    assert (replicas["min"], replicas["max"], replicas["wanted"], replicas["ready"]) == (2, 3, 2, 0)
    assert replicas["unplaced"] == "no healthy node has a RTX4090 GPU (0 healthy node(s))"
    assert patched.json()["timeout_s"] == 30
    assert patched.json()["env"] == {"MODEL": "sd15"}
    assert (await control_plane.http.delete(path, headers=control_plane.admin())).status_code == 204
    assert (await control_plane.http.get(path, headers=control_plane.admin())).status_code == 404
    again = await control_plane.http.post(
        "/v1/workspaces", json=VALID, headers=control_plane.admin()
    )
    assert again.status_code == 201, "a deleted workspace's name is free again"


def _without(field: str) -> dict[str, Any]:
    return {k: v for k, v in VALID.items() if k != field}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (_without("name"), 422, "name"),
        (_without("image"), 422, "image"),
        (_without("command"), 422, "command"),
        (_without("gpu"), 422, "gpu"),
        (_without("ports"), 422, "ports"),
        ({**VALID, "gpu": {"type": "RTX4090", "count": 0}}, 422, "gpu.count"),
        ({**VALID, "gpu": {"type": "RTX4090", "count": "1"}}, 422, "gpu.count"),
        ({**VALID, "gpu": {"type": "", "count": 1}}, 422, "gpu.type"),
        ({**VALID, "ports": []}, 422, "ports"),
        ({**VALID, "ports": [8080, 8080]}, 422, "ports"),
        ({**VALID, "ports": [70000]}, 422, "ports.0"),
        ({**VALID, "ports": "8080"}, 422, "ports"),
        ({**VALID, "command": ""}, 422, "command"),
        ({**VALID, "command": ["python", ""]}, 422, "command"),
        ({**VALID, "name": "Bad Name!"}, 422, "name"),
        ({**VALID, "replicas": {"min": 3, "max": 2}}, 422, "replicas"),
        ({**VALID, "timeout_s": -1}, 422, "timeout_s"),
        ({**VALID, "env": {"1BAD": "x"}}, 422, "env"),
        ({**VALID, "health_path": "health"}, 422, "health_path"),
        ({**VALID, "surprise": True}, 422, "surprise"),
    ],
)
async def test_bad_workspace_bodies_name_the_field(
    control_plane: ControlPlane, body: dict[str, Any], status: int, field: str
) -> None:
    response = await control_plane.http.post(
        "/v1/workspaces", json=body, headers=control_plane.admin()
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert [r async for r in control_plane.bus.replay([topics.WORKSPACES])] == []


@pytest.mark.parametrize(
    ("command", "env", "field"),
    [
        ('"run \\ud800"', "{}", "command"),
        ('["run", "\\udfff"]', "{}", "command"),
        ('"run"', '{"A": "\\ud800x"}', "env"),
    ],
)
async def test_lone_surrogates_are_refused_not_a_500(
    control_plane: ControlPlane, command: str, env: str, field: str
) -> None:
    # JSON can escape a lone surrogate; no event can carry one (the event codec's error
    # was a 500).
    raw = (f'{{"name": "lone", "image": "i", "command": {command}, "env": {env}, '
           f'"gpu": {{"type": "A100", "count": 1}}, "ports": [9000]}}')  # fmt: skip
    headers = {**control_plane.admin(), "Content-Type": "application/json"}
    response = await control_plane.http.post("/v1/workspaces", content=raw, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert [r async for r in control_plane.bus.replay([topics.WORKSPACES])] == []


async def test_malformed_json_is_a_400(control_plane: ControlPlane) -> None:
    response = await control_plane.http.post(
        "/v1/workspaces",
        content=b'{"name": ',
        headers={**control_plane.admin(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic abc"},
        {"Authorization": f"Bearer {'join-secret-token'}"},
    ],
    ids=["missing", "wrong", "not-bearer", "join-token"],
)
async def test_bad_admin_tokens_are_401(
    control_plane: ControlPlane, headers: dict[str, str]
) -> None:
    response = await control_plane.http.post("/v1/workspaces", json=VALID, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["field"] == "Authorization"
    listing = await control_plane.http.get("/v1/nodes", headers=headers)
    assert listing.status_code == 401


async def test_duplicate_names_are_409(control_plane: ControlPlane) -> None:
    first = await control_plane.http.post(
        "/v1/workspaces", json=VALID, headers=control_plane.admin()
    )
    second = await control_plane.http.post(
        "/v1/workspaces", json=VALID, headers=control_plane.admin()
    )
    assert first.status_code == 201 and second.status_code == 409
    assert second.json()["error"]["field"] == "name"


async def test_unknown_workspace_is_404(control_plane: ControlPlane) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await control_plane.http.request(
            method, "/v1/workspaces/12345678901234567890", headers=control_plane.admin(),
            json={} if method == "PATCH" else None,
        )  # fmt: skip
        assert response.status_code == 404, (method, response.text)


async def test_oversized_bodies_are_413_with_or_without_a_length(
    control_plane: ControlPlane,
) -> None:
    huge = {**VALID, "env": {f"K{i}": "v" * 1000 for i in range(1100)}}
    response = await control_plane.http.post(
        "/v1/workspaces", json=huge, headers=control_plane.admin()
    )
    assert response.status_code == 413

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(2000):
            yield b" " * 1024

    streamed = await control_plane.http.post(
        "/v1/workspaces",
        content=chunks(),
        headers={**control_plane.admin(), "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert [r async for r in control_plane.bus.replay([topics.WORKSPACES])] == []
