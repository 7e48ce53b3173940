"""Generating `schemas/events/*.json` from the event classes."""

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
