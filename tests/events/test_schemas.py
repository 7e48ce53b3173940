"""The committed JSON Schemas are exactly what the code generates, and they hold for
real encoded events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from events import EVENT_TYPES, encode
from services.tools.schemas import render_event_schemas, write_event_schemas
from tests.conftest import REPO
from tests.events.strategies import envelopes

SCHEMA_DIR = REPO / "schemas" / "events"


def test_committed_schemas_match_the_code() -> None:
    drift = write_event_schemas(SCHEMA_DIR, check=True)
    assert drift == [], f"run `ngpu schemas`: these differ from the code: {drift}"


def test_check_reports_drift_and_write_repairs_it(tmp_path: Path) -> None:
    out = tmp_path / "events"
    write_event_schemas(out)
    (out / "TaskSubmitted.json").write_text("{}")
    (out / "TaskVanished.json").write_text("{}")
    assert write_event_schemas(out, check=True) == ["TaskSubmitted.json", "TaskVanished.json"]
    write_event_schemas(out)
    assert write_event_schemas(out, check=True) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(render_event_schemas())


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_encoded_events_satisfy_their_schema(name: str, data: st.DataObject) -> None:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    document = json.loads(encode(data.draw(envelopes(EVENT_TYPES[name]))))
    errors = list(Draft202012Validator(schema).iter_errors(document))
    assert errors == []
