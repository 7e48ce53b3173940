"""Errors of the projections. Foreign errors (clickhouse-connect, chdb) are translated at
the boundary in `projections.store`, with the original as `__cause__`."""

from events.errors import NgpuError


class ProjectionError(NgpuError):
    """Root of the projections' errors."""


class StoreError(ProjectionError):
    """The ClickHouse store failed a statement (unreachable, missing table, bad data).
    Writes that raise this wrote nothing durable that a replay would not fix."""


class InvalidName(ProjectionError, ValueError):
    """A database or table name that is not a plain identifier."""


class InvalidQuery(ProjectionError, ValueError):
    """A read query with arguments it cannot answer (unknown grouping, bad limit)."""


class UnknownCursor(InvalidQuery):
    """A task-list cursor that names no task of that workspace in that time range."""
