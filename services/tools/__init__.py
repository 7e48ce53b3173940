"""Operator tools behind the CLI: schema generation and the event log tail."""

from services.tools.schemas import write_event_schemas
from services.tools.tail import tail_events

__all__ = ["tail_events", "write_event_schemas"]
