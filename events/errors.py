"""Errors of the shared contract, and the project's one root exception."""


class NgpuError(Exception):
    """Root of every error this project raises on purpose."""


class EventDecodeError(NgpuError, ValueError):
    """Bytes that are not a valid, known event: garbage, truncated, unknown type,
    unsupported schema version, missing or mistyped fields."""


class EventEncodeError(NgpuError, ValueError):
    """An event whose values cannot be written to the wire (e.g. a non-finite float)."""
