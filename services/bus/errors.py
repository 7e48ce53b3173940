"""Errors of the message bus."""

from events.errors import NgpuError


class BusError(NgpuError):
    """The bus could not do what was asked (I/O failure, closed bus, misuse)."""


class BusUnavailable(BusError):
    """The bus cannot accept or deliver events right now; nothing was acknowledged.
    The HTTP layer answers 503 for it."""
