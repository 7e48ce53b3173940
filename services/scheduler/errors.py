"""Errors of the scheduler core. "No node fits" is never an error (it is `Unschedulable`);
these are raised for bugs in the caller (bad settings, naive times, a stale placement)."""

from events.errors import NgpuError


class SchedulerError(NgpuError):
    """Root of the scheduler's errors."""


class InvalidSchedulerSettings(SchedulerError, ValueError):
    """A scheduler setting is out of range (negative weight, non-positive window, ...)."""


class UnknownPluginError(SchedulerError, LookupError):
    """The settings name a filter or score plugin that is not in the registry."""


class NaiveDatetimeError(SchedulerError, ValueError):
    """A time without a timezone was passed in; every time the core takes is UTC-aware."""


class StalePlacementError(SchedulerError):
    """A placement does not match the task or the state it is being turned into an event
    against (its node or replica is gone): it was decided on another state."""


class NotRetryableError(SchedulerError):
    """A retry was asked for a failure that its emitter marked as not retryable."""
