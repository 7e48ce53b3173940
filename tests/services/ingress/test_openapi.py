"""The OpenAPI document: committed as `schemas/openapi.json` exactly as the code makes it
and as `/openapi.json` serves it, with a bearer scheme on every route that takes one (so
`/docs` can call them) and the contract's examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from services.ingress.contract_examples import (
    BRC20_CHECK,
    CANCELLED,
    DETAIL,
    QUERIED,
    SUBMITTED,
    SYNC_ANSWER,
    TASK_LIST,
)
from services.tools.schemas import render_openapi, write_openapi
from tests.conftest import REPO
from tests.services.ingress.conftest import ControlPlane

COMMITTED = REPO / "schemas" / "openapi.json"


def test_committed_document_matches_the_code() -> None:
    assert not write_openapi(COMMITTED, check=True), "run `ngpu schemas`: openapi.json differs"


def test_check_reports_drift_and_write_repairs_it(tmp_path: Path) -> None:
    path = tmp_path / "openapi.json"
    assert write_openapi(path, check=True)  # absent
    assert not path.exists()
    assert write_openapi(path)
    assert not write_openapi(path, check=True)
    path.write_bytes(path.read_bytes().replace(b"NodeToken", b"NodeTokne"))
    assert write_openapi(path, check=True)


async def test_the_served_document_is_the_committed_one(control_plane: ControlPlane) -> None:
    served = (await control_plane.http.get("/openapi.json")).json()
    assert served == orjson.loads(render_openapi())


Operation = dict[str, Any]


def _operations() -> list[tuple[str, str, Operation]]:
    doc = orjson.loads(COMMITTED.read_bytes())
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def _scheme_for(path: str, method: str) -> str | None:
    """Which credential a route takes, by the API's layout."""
    if path.startswith("/brc20/"):
        return None  # a common interface of the contract: no bearer
    if path.startswith(("/user/", "/v1/tasks/")):
        return "WorkspaceID"
    if path == "/v1/nodes/register":
        return "JoinToken"
    drain = ("/v1/nodes/{node_id}/drain", "post")
    if path.startswith("/v1/nodes/{node_id}/") and (path, method) != drain:
        return "NodeToken"
    return "AdminToken"


@pytest.mark.parametrize(("path", "method", "operation"), _operations())
def test_every_route_names_the_credential_it_takes(
    path: str, method: str, operation: Operation
) -> None:
    wanted = _scheme_for(path, method)
    assert operation.get("security", []) == ([{wanted: []}] if wanted else []), (method, path)


def test_the_schemes_are_bearer_schemes() -> None:
    schemes = orjson.loads(COMMITTED.read_bytes())["components"]["securitySchemes"]
    assert set(schemes) == {"AdminToken", "JoinToken", "NodeToken", "WorkspaceID"}
    for scheme in schemes.values():
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        assert scheme["description"].startswith("`Authorization: Bearer <")


@pytest.mark.parametrize(("path", "method", "status", "example"), [
    ("/user/schedulingTask", "post", "202", SUBMITTED),  # result_code 100 travels as 202
    ("/user/queryTask", "get", "200", QUERIED),
    ("/user/queryTaskList", "get", "200", TASK_LIST),
    ("/user/getDetailed", "get", "200", DETAIL),
    ("/user/cancelTask", "post", "200", CANCELLED),
    ("/user/{path}", "post", "200", SYNC_ANSWER),
    ("/brc20/checkAddress", "get", "200", BRC20_CHECK),
])  # fmt: skip
def test_the_contract_examples_are_the_answers_examples(
    path: str, method: str, status: str, example: dict[str, Any]
) -> None:
    doc = orjson.loads(COMMITTED.read_bytes())
    answer = doc["paths"][path][method]["responses"][status]["content"]["application/json"]
    assert answer["example"] == example
    # ...and fit the answer's schema.
    schema = {**answer["schema"], "components": doc["components"]}
    assert [e.message for e in Draft202012Validator(schema).iter_errors(example)] == []
