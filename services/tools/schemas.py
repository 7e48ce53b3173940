"""Generating `schemas/events/*.json` from the event classes and `schemas/openapi.json` from
the HTTP API's routes."""

from __future__ import annotations

from pathlib import Path

import orjson

from events import EVENT_TYPES, event_json_schema


def render_event_schemas() -> dict[str, bytes]:
    """File name -> exact file content, for every event type."""
    return {
        f"{name}.json": orjson.dumps(
            event_json_schema(cls), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        )
        + b"\n"
        for name, cls in sorted(EVENT_TYPES.items())
    }


def write_event_schemas(out: Path, *, check: bool = False) -> list[str]:
    """Bring `out` in line with the code; return the names that differed (were written,
    or with `check`, would be). Files of event types that no longer exist count too and
    are removed."""
    wanted = render_event_schemas()
    present = {p.name for p in out.glob("*.json")} if out.is_dir() else set()
    differing = sorted(
        name
        for name in wanted.keys() | present
        if name not in wanted or name not in present or (out / name).read_bytes() != wanted[name]
    )
    if not check:
        out.mkdir(parents=True, exist_ok=True)
        for name in differing:
            if name in wanted:
                (out / name).write_bytes(wanted[name])
            else:
                (out / name).unlink()
    return differing


def render_openapi() -> bytes:
    """The OpenAPI document of the HTTP API, as `schemas/openapi.json` holds it."""
    from services.ingress.app import openapi_document

    return orjson.dumps(openapi_document(), option=orjson.OPT_INDENT_2) + b"\n"


def write_openapi(path: Path, *, check: bool = False) -> bool:
    """Bring `path` in line with the routes; True when it differed (was written, or with
    `check`, would be)."""
    wanted = render_openapi()
    differs = not path.is_file() or path.read_bytes() != wanted
    if differs and not check:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wanted)
    return differs
