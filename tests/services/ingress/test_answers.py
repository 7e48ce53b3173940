"""The answer models (`services.ingress.answers`) are true: real answers of a control plane
conform to the committed OpenAPI document, successes and errors alike, with the optional
parts present (a cursor, a scaling decision, a failed rollout, deployments)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from events import DeploymentReady, DeploymentRequested, ReplicasScaled, RolloutFailed
from services.ingress.answers import ContractError, ErrorAnswer
from tests.services.ingress.conftest import ControlPlane
from tests.support.openapi import answer_violations, document

WORKSPACE: dict[str, Any] = {
    "image": "img", "command": "true", "gpu": {"type": "RTX 4090", "count": 1},
    "ports": [8080], "env": {"A": "1"},
}  # fmt: skip
NODE: dict[str, Any] = {
    "address": "0x" + "ab" * 20, "host": "127.0.0.1",
    "gpus": [{"type": "NVIDIA GeForce RTX 4090", "memory_mb": 24564}],
}  # fmt: skip


def conforms(path: str, method: str, response: httpx.Response, status: int) -> dict[str, Any]:
    """`response`'s body, once it is checked to be `status` and to conform."""
    assert response.status_code == status, response.text
    assert answer_violations(path, method, response) == [], response.text
    body: dict[str, Any] = response.json() if response.content else {}
    return body


async def test_workspace_answers_conform(control_plane: ControlPlane) -> None:
    cp, admin = control_plane, control_plane.admin()
    one = "/v1/workspaces/{workspace_id}"
    created = conforms("/v1/workspaces", "post", await cp.http.post(
        "/v1/workspaces", json={**WORKSPACE, "name": "a"}, headers=admin), 201)  # fmt: skip
    workspace_id = created["workspace_id"]
    assert "unplaced" in created["replicas"]  # no node: the optional part is there
    await cp.http.post("/v1/workspaces", json={**WORKSPACE, "name": "b"}, headers=admin)
    # A decision of the scheduler, a failed rollout: the parts null until then.
    patched = conforms(one, "patch", await cp.http.patch(
        f"/v1/workspaces/{workspace_id}", json={"image": "img:2"}, headers=admin), 200)  # fmt: skip
    await cp.context.publish([
        ReplicasScaled(workspace_id=workspace_id, replicas=1, reason="queue delay"),
        RolloutFailed(workspace_id=workspace_id, revision=patched["revision"], reason="crash"),
    ])  # fmt: skip
    read = conforms(one, "get", await cp.http.get(f"/v1/workspaces/{workspace_id}",
                                                  headers=admin), 200)  # fmt: skip
    assert read["scaling"]["last"] is not None and read["rollout"] is not None
    page = conforms("/v1/workspaces", "get", await cp.http.get(
        "/v1/workspaces", params={"limit": 1}, headers=admin), 200)  # fmt: skip
    assert "cursor" in page
    conforms("/v1/workspaces", "get", await cp.http.get(
        "/v1/workspaces", params={"cursor": page["cursor"]}, headers=admin), 200)  # fmt: skip
    conforms(one + "/webhook-secret", "post", await cp.http.post(
        f"/v1/workspaces/{workspace_id}/webhook-secret", headers=admin), 200)  # fmt: skip
    conforms(one + "/registry-auth", "delete", await cp.http.delete(
        f"/v1/workspaces/{workspace_id}/registry-auth", headers=admin), 200)  # fmt: skip


async def test_node_answers_conform(control_plane: ControlPlane) -> None:
    cp = control_plane
    registered = conforms("/v1/nodes/register", "post", await cp.http.post(
        "/v1/nodes/register", json=NODE, headers=cp.join()), 201)  # fmt: skip
    node_id, own = registered["node_id"], {"Authorization": f"Bearer {registered['token']}"}
    await cp.context.publish([
        DeploymentRequested(deployment_id="dep-1", node_id=node_id, workspace_id="w1",
                            image="img", command=("run",), ports=(8080,), gpu_type="RTX4090",
                            gpu_count=1),
        DeploymentReady(deployment_id="dep-1", node_id=node_id, workspace_id="w1",
                        host_ports={"8080": 31000}),
    ])  # fmt: skip
    conforms("/v1/nodes/{node_id}/heartbeat", "post", await cp.http.post(
        f"/v1/nodes/{node_id}/heartbeat", json={"in_flight": 1}, headers=own), 200)  # fmt: skip
    assignments = conforms("/v1/nodes/{node_id}/assignments", "get", await cp.http.get(
        f"/v1/nodes/{node_id}/assignments", headers=own), 200)  # fmt: skip
    assert [d["deployment_id"] for d in assignments["deployments"]] == ["dep-1"]
    listing = conforms("/v1/nodes", "get", await cp.http.get("/v1/nodes", headers=cp.admin()), 200)
    assert listing["nodes"][0]["deployments"][0]["ports"] == {"8080": 31000}
    conforms("/v1/nodes/{node_id}/drain", "post", await cp.http.post(
        f"/v1/nodes/{node_id}/drain", headers=cp.admin()), 200)  # fmt: skip
    conforms("/v1/nodes/{node_id}/deployments/{deployment_id}/registry-auth", "get",
             await cp.http.get(f"/v1/nodes/{node_id}/deployments/dep-1/registry-auth",
                               headers=own), 404)  # fmt: skip


BAD_BEARER = {"Authorization": "Bearer nope"}


@pytest.mark.parametrize(("method", "url", "documented", "kwargs", "status"), [
    ("get", "/v1/workspaces", "get /v1/workspaces", {}, 401),
    ("get", "/v1/nodes", "get /v1/nodes", {"headers": BAD_BEARER}, 401),
    ("post", "/v1/nodes/register", "post /v1/nodes/register", {"headers": BAD_BEARER}, 401),
    ("get", "/v1/tasks/x", "get /v1/tasks/{taskID}", {"headers": BAD_BEARER}, 401),
    ("get", "/v1/workspaces/nope", "get /v1/workspaces/{workspace_id}", {"admin": True}, 404),
    ("post", "/v1/workspaces", "post /v1/workspaces", {"admin": True, "json": {"name": "x"}},
     422),
    ("post", "/v1/workspaces", "post /v1/workspaces",
     {"admin": True, "content": b"{", "headers": {"Content-Type": "application/json"}}, 400),
    ("get", "/v1/workspaces", "get /v1/workspaces", {"admin": True, "params": {"cursor": "x"}},
     400),
    # Registry credentials without NGPU_SECRETS_KEY: a 503 naming it.
    ("put", "/v1/workspaces/{id}/registry-auth", "put /v1/workspaces/{workspace_id}/registry-auth",
     {"admin": True, "json": {"server": "r", "username": "u", "password": "p"}}, 503),
    # The router's own answers take the same shape: a path no route has (a taskID with a
    # slash), a method the path is not served with (checked against the path's 4XX).
    ("get", "/v1/tasks/a/b", "get /v1/tasks/{taskID}", {}, 404),
    ("put", "/v1/nodes", "get /v1/nodes", {}, 405),
    # The NGPU API's errors take the contract's shape.
    ("get", "/user/queryTask?taskID=x", "get /user/queryTask", {}, 401),
    ("post", "/user/schedulingTask", "post /user/schedulingTask", {"headers": BAD_BEARER}, 401),
    ("get", "/user/queryTask", "get /user/queryTask", {"workspace": True}, 400),
    ("get", "/user/queryTask?taskID=x", "get /user/queryTask", {"workspace": True}, 503),
    ("get", "/user/img2img", "post /user/{path}", {}, 405),
])  # fmt: skip
async def test_error_answers_conform(
    control_plane: ControlPlane,
    method: str,
    url: str,
    documented: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    cp = control_plane
    created = await cp.http.post("/v1/workspaces", json={**WORKSPACE, "name": "w"},
                                 headers=cp.admin())  # fmt: skip
    workspace_id = created.json()["workspace_id"]
    headers = kwargs.pop("headers", {})
    if kwargs.pop("admin", False):
        headers = {**headers, **cp.admin()}
    if kwargs.pop("workspace", False):
        headers = {**headers, "Authorization": f"Bearer {workspace_id}"}
    url = url.replace("{id}", workspace_id)
    response = await cp.http.request(method, url, headers=headers, **kwargs)
    verb, path = documented.split(" ")
    body = conforms(path, verb, response, status)
    assert set(body) >= ({"result_code", "msg"} if path.startswith("/user/") else {"error"})


def test_every_json_answer_has_a_schema_a_generator_can_use() -> None:
    # Not FastAPI's bare `{}` or free-form object, nor its 422 body (the API's own differs).
    doc = document()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema")
                if schema is None:
                    continue
                where = f"{method} {path} {status}"
                assert schema.get("$ref", "").startswith("#/components/schemas/"), where


def test_every_bearer_route_documents_its_401() -> None:
    for path, operations in document()["paths"].items():
        for method, operation in operations.items():
            if not operation.get("security"):
                continue
            schema = operation["responses"]["401"]["content"]["application/json"]["schema"]
            model = ContractError if path.startswith("/user/") else ErrorAnswer
            assert schema == {"$ref": f"#/components/schemas/{model.__name__}"}, (method, path)
