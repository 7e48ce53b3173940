"""What the docs say matches the code: README's result codes and settings, the served
OpenAPI."""

from __future__ import annotations

import re
from typing import Any

from services.ingress.results import RESULT_CODES
from services.settings import ENV_PREFIX, Settings
from tests.conftest import REPO
from tests.services.ingress.conftest import ControlPlane


def test_readme_result_code_table_matches_the_code() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Result codes", 1)[1].split("\n#", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d{3}) \|", section, re.M)}
    assert documented == set(RESULT_CODES)


def test_readme_settings_table_names_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Settings", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = set(re.findall(rf"`{ENV_PREFIX}([A-Z0-9_]+)`", "".join(rows)))
    assert documented == {name.upper() for name in Settings.model_fields}


async def test_openapi_documents_the_ngpu_routes_parameters_and_bearer(
    control_plane: ControlPlane,
) -> None:
    # The submission routes read their query parameters themselves (no FastAPI `Query`),
    # so their documentation comes from `openapi_extra`: check it is served.
    doc = (await control_plane.http.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["WorkspaceID"] == {
        "type": "http", "scheme": "bearer",
        "description": "`Authorization: Bearer <Workspace ID>`",
    }  # fmt: skip
    options = {"timeout_s": False, "ttl_s": False, "priority": False}
    expected = {
        ("/user/schedulingTask", "post"): {"paramUrl": True, "paramPort": False, **options,
                                           "webhook": False, "webhook_events": False,
                                           "Idempotency-Key": False, "stream": False},
        ("/user/{path}", "post"): {"path": True, "paramPort": False, **options, "Prefer": False,
                                   "Idempotency-Key": False, "Accept": False},
        ("/user/streamTask", "get"): {"taskID": True},
        ("/user/queryTask", "get"): {"taskID": True},
        ("/user/cancelTask", "post"): {"taskID": True},
        ("/user/queryTaskList", "get"): {"startTime": False, "endTime": False, "limit": False,
                                         "cursor": False},
        ("/user/getDetailed", "get"): {"taskID": True},
        ("/user/usage", "get"): {"startTime": False, "endTime": False, "group_by": False},
        ("/brc20/checkAddress", "get"): {"address": True},
    }  # fmt: skip
    for (path, method), params in expected.items():
        operation = doc["paths"][path][method]
        # The BRC-20 check is one of the contract's common interfaces: no bearer.
        security = operation.get("security", [])
        assert security == ([] if path.startswith("/brc20/") else [{"WorkspaceID": []}]), path
        assert {p["name"]: p["required"] for p in operation["parameters"]} == params, path


async def test_openapi_documents_the_task_history_route(control_plane: ControlPlane) -> None:
    doc = (await control_plane.http.get("/openapi.json")).json()
    operation = doc["paths"]["/v1/tasks/{taskID}"]["get"]
    assert operation["summary"] and "history" in operation["summary"]
    assert "404" in operation["description"] and "body" in operation["description"]
    assert operation["security"] == [{"WorkspaceID": []}]
    assert {p["name"]: p["required"] for p in operation["parameters"]} == {"taskID": True}


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a parameter's schema admits, but null (an absent optional one)."""
    found = {schema["type"]} if "type" in schema else set()
    for option in schema.get("anyOf", []):
        found |= _types(option)
    return found - {"null"}


async def test_openapi_types_the_ngpu_query_parameters(control_plane: ControlPlane) -> None:
    # What a schema-driven fuzzer (or a client generator) needs to reach each parameter.
    doc = (await control_plane.http.get("/openapi.json")).json()
    expected = {"paramUrl": "string", "paramPort": "integer", "taskID": "string",
                "startTime": "string", "endTime": "string", "limit": "integer",
                "cursor": "string", "address": "string", "timeout_s": "number",
                "ttl_s": "number", "priority": "integer", "webhook": "string",
                "webhook_events": "string", "stream": "boolean", "group_by": "string"}  # fmt: skip
    seen: dict[str, set[str]] = {}
    for path, operations in doc["paths"].items():
        if not path.startswith(("/user/", "/brc20/")):
            continue
        for operation in operations.values():
            for param in operation["parameters"]:
                if param["in"] == "query":
                    seen.setdefault(param["name"], set()).update(_types(param["schema"]))
    assert seen == {name: {kind} for name, kind in expected.items()}
    for path in ("/user/schedulingTask", "/user/{path}"):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert set(body["schema"]["properties"]) == {"btc_address", "data"}, path


async def test_openapi_documents_the_streamed_answers(control_plane: ControlPlane) -> None:
    doc = (await control_plane.http.get("/openapi.json")).json()
    for path, method in (("/user/{path}", "post"), ("/user/streamTask", "get")):
        answers = doc["paths"][path][method]["responses"]["200"]
        assert "text/event-stream" in answers["content"], path
