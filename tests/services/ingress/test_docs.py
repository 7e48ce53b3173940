"""What the docs say matches the code: README's result codes and settings, the served
OpenAPI."""

from __future__ import annotations

import re

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
    expected = {
        ("/user/schedulingTask", "post"): {"paramUrl": True, "paramPort": False},
        ("/user/{path}", "post"): {"path": True, "paramPort": False},
        ("/user/queryTask", "get"): {"taskID": True},
        ("/user/queryTaskList", "get"): {"startTime": False, "endTime": False, "limit": False,
                                         "cursor": False},
        ("/user/getDetailed", "get"): {"taskID": True},
        ("/brc20/checkAddress", "get"): {"address": True},
    }  # fmt: skip
    for (path, method), params in expected.items():
        operation = doc["paths"][path][method]
        assert operation["security"] == [{"WorkspaceID": []}], path
        assert {p["name"]: p["required"] for p in operation["parameters"]} == params, path
