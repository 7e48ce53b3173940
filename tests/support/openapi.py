"""Checking real answers against the committed OpenAPI document (`schemas/openapi.json`),
with jsonschema: what a client generated from it would expect."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

import httpx
import orjson
from jsonschema import Draft202012Validator, FormatChecker

from tests.conftest import REPO

DOCUMENT = REPO / "schemas" / "openapi.json"

_FORMATS = FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    # jsonschema checks `date-time` only with an optional package; RFC 3339 asks a `T`
    # and an offset.
    if not isinstance(value, str):
        return True
    return "T" in value and datetime.fromisoformat(value).tzinfo is not None


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(DOCUMENT.read_bytes())
    return loaded


def documented_answer(path: str, method: str, status: int) -> dict[str, Any] | None:
    """The response object the document gives `method path` for `status`: its own code,
    else its class (`4XX`), else `default`, as OpenAPI resolves them."""
    responses = document()["paths"][path][method.lower()]["responses"]
    for key in (str(status), f"{status // 100}XX", "default"):
        if key in responses:
            answer: dict[str, Any] = responses[key]
            return answer
    return None


def answer_violations(path: str, method: str, response: httpx.Response) -> list[str]:
    """How `response` departs from what the document says `method path` (its template,
    e.g. `/v1/workspaces/{workspace_id}`) answers with that status; [] when it conforms."""
    answer = documented_answer(path, method, response.status_code)
    if answer is None:
        return [f"{response.status_code} is not documented"]
    content = answer.get("content", {})
    if not response.content:
        return [] if not content else ["an empty body where one is documented"]
    media_type = response.headers.get("content-type", "").split(";")[0].strip()
    if media_type not in content:
        return [f"{media_type!r} is not documented (only {sorted(content)})"]
    schema = {**content[media_type]["schema"], "components": document()["components"]}
    validator = Draft202012Validator(schema, format_checker=_FORMATS)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
        for error in validator.iter_errors(response.json())
    ]
