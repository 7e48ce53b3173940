"""Logging, configured once per process: structlog's processors render every line, the
standard library's `logging` calls included (through `structlog.stdlib.ProcessorFormatter`).

`NGPU_LOG_FORMAT`: `json` (one object a line) or `console` (for people); unset: console
on a TTY, else JSON. Context bound with `bind` (structlog's context variables: per asyncio
task, inherited by the tasks it creates) is added to every line logged meanwhile: the
ingress binds a request's workspace and task, the dispatcher a call's task, workspace,
node and attempt. A workspace is always named by `workspace_hash`, never by its
Workspace ID (the customer's bearer credential); tokens and bodies are never bound.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
from typing import Any

import orjson
import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars, merge_contextvars

FORMAT_VARIABLE = "NGPU_LOG_FORMAT"
ACCESS_LOGGER = "ngpu.access"

__all__ = ["bind", "clear", "configure_logging", "workspace_hash"]

bind = bind_contextvars
clear = clear_contextvars


@functools.lru_cache(maxsize=65_536)
def workspace_hash(workspace_id: str) -> str:
    """A short, stable name for a workspace in logs and metric labels: the first 12 hex
    digits of the SHA-256 of its id (the id itself is a credential)."""
    return hashlib.sha256(workspace_id.encode()).hexdigest()[:12]


def _dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _format(configured: str | None) -> str:
    value = (configured or os.environ.get(FORMAT_VARIABLE, "")).strip().lower()
    if value in ("json", "console"):
        return value
    return "console" if sys.stderr.isatty() else "json"


def configure_logging(level: str = "info", log_format: str | None = None) -> None:
    """Route structlog and the standard library's logging to stderr in one format
    (`log_format`, else `NGPU_LOG_FORMAT`, else by TTY) at `level`. Idempotent: calling it
    again replaces the handler."""
    shared: list[Any] = [
        merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if _format(log_format) == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    from services.logfilter import RepeatFilter

    # aiokafka's retry loop while the broker is away logs ~10 lines a second.
    handler.addFilter(RepeatFilter(("aiokafka",)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # One line per HTTP call (heartbeats, health checks) drowns everything else.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
