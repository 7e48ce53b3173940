"""Errors of the distributed scheduler."""

from services.scheduler.errors import SchedulerError


class NotLeaderError(SchedulerError):
    """A decision was about to be published by a process that is not (or no longer) the
    scheduler group's leader; nothing was published."""


class SchedulerAppError(SchedulerError):
    """The faust app stopped on its own (crashed) before it was asked to stop."""
