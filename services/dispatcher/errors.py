"""Errors of the dispatcher role."""

from events.errors import NgpuError


class DispatcherError(NgpuError):
    """The dispatcher cannot run (misconfiguration)."""
