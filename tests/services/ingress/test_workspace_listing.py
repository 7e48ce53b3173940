"""`GET /v1/workspaces` (paged, filtered by name) and the registry credentials routes,
over real HTTP against the real embedded bus."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from events import topics
from services.secretbox import SecretBox
from tests.services.ingress.conftest import ControlPlane

AUTH = {"server": "ghcr.io", "username": "bot", "password": "s3cr3t-registry-pw"}


def _body(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "ngpu/x:1", "command": "serve", "ports": [8080],
            "gpu": {"type": "RTX4090", "count": 1}, **extra}  # fmt: skip


async def _create(cp: ControlPlane, name: str, **extra: Any) -> dict[str, Any]:
    created = await cp.http.post("/v1/workspaces", json=_body(name, **extra), headers=cp.admin())
    assert created.status_code == 201, created.text
    return dict(created.json())


async def test_the_listing_pages_through_every_workspace_in_name_order(
    control_plane: ControlPlane,
) -> None:
    cp = control_plane
    names = ["delta", "alpha", "charlie", "bravo", "alpha-2"]
    made = {n: await _create(cp, n) for n in names}
    seen: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await cp.http.get("/v1/workspaces", params=params, headers=cp.admin())).json()
        seen += page["workspaces"]
        if "cursor" not in page:
            break
        cursor = page["cursor"]
    assert [w["name"] for w in seen] == sorted(names)
    one = await cp.http.get(f"/v1/workspaces/{made['bravo']['workspace_id']}", headers=cp.admin())
    assert next(w for w in seen if w["name"] == "bravo") == one.json()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({"name": "alpha"}, ["alpha"], id="exact-name"),
        pytest.param({"name_prefix": "alpha"}, ["alpha", "alpha-2"], id="prefix"),
        pytest.param({"name": "nobody"}, [], id="no-match"),
        pytest.param({"limit": 1000}, ["alpha", "alpha-2", "bravo"], id="max-limit"),
    ],
)
async def test_the_listing_filters_by_name(
    control_plane: ControlPlane, params: dict[str, Any], expected: list[str]
) -> None:
    cp = control_plane
    for name in ("bravo", "alpha-2", "alpha"):
        await _create(cp, name)
    page = (await cp.http.get("/v1/workspaces", params=params, headers=cp.admin())).json()
    assert [w["name"] for w in page["workspaces"]] == expected
    assert "cursor" not in page


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"limit": 0}, "limit", id="limit-0"),
        pytest.param({"limit": 1001}, "limit", id="limit-over-max"),
        pytest.param({"cursor": "not-a-cursor"}, "cursor", id="bad-cursor"),
    ],
)
async def test_bad_listing_parameters_are_refused_naming_them(
    control_plane: ControlPlane, params: dict[str, Any], field: str
) -> None:
    cp = control_plane
    answer = await cp.http.get("/v1/workspaces", params=params, headers=cp.admin())
    assert answer.status_code in (400, 422)
    assert field in answer.json()["error"]["field"]
    assert (await cp.http.get("/v1/workspaces")).status_code == 401


async def test_registry_auth_without_a_secrets_key_is_refused_naming_the_setting(
    control_plane: ControlPlane,
) -> None:
    cp = control_plane
    answer = await cp.http.post(
        "/v1/workspaces", json=_body("private", registry_auth=AUTH), headers=cp.admin()
    )
    assert answer.status_code == 503
    assert "NGPU_SECRETS_KEY" in answer.json()["error"]["message"]
    assert [r async for r in cp.bus.replay([topics.WORKSPACES])] == []
    made = await _create(cp, "public")
    assert made["registry_auth"] is None
    put = await cp.http.put(f"/v1/workspaces/{made['workspace_id']}/registry-auth", json=AUTH,
                            headers=cp.admin())  # fmt: skip
    assert put.status_code == 503


async def test_registry_auth_is_set_replaced_and_removed_never_shown(
    control_plane: ControlPlane,
) -> None:
    cp = control_plane
    cp.context.secret_box = SecretBox.parse(Fernet.generate_key().decode())
    made = await _create(cp, "private", registry_auth=AUTH)
    url = f"/v1/workspaces/{made['workspace_id']}/registry-auth"
    assert made["registry_auth"] == {"server": "ghcr.io", "username": "bot"}
    replaced = await cp.http.put(url, json={**AUTH, "username": "bot2", "password": "pw2-long"},
                                 headers=cp.admin())  # fmt: skip
    assert replaced.json()["registry_auth"] == {"server": "ghcr.io", "username": "bot2"}
    listed = await cp.http.get("/v1/workspaces", headers=cp.admin())
    assert listed.json()["workspaces"][0]["registry_auth"]["username"] == "bot2"
    removed = await cp.http.delete(url, headers=cp.admin())
    assert removed.status_code == 200 and removed.json()["registry_auth"] is None
    log = b"".join([r.value async for r in cp.bus.replay([topics.WORKSPACES])])
    assert b"s3cr3t-registry-pw" not in log and b"pw2-long" not in log and b"bot2" not in log
    bad = await cp.http.put(url, json={**AUTH, "password": ""}, headers=cp.admin())
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "password"
    assert (await cp.http.put(url, json=AUTH)).status_code == 401
