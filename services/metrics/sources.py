"""What the scrape-time gauges read: the live objects of this process that hold folded
state, registered by their owners as they are made and held weakly (a role restarted
replaces its objects; the newest living one of a kind is read)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from projections.projector import Projector
    from services.bus import Consumer
    from services.ingress.follower import DirectoryFollower
    from services.ingress.taskfollower import TaskFollower
    from services.scheduler.runner import SchedulerRunner


@dataclass(frozen=True, slots=True)
class IngressSource:
    directory: weakref.ref[DirectoryFollower]
    tasks: weakref.ref[TaskFollower] | None
    lost_after_s: float


_ingresses: list[IngressSource] = []
_schedulers: list[weakref.ref[SchedulerRunner]] = []
_projectors: list[weakref.ref[Projector]] = []
T = TypeVar("T")
consumers: weakref.WeakKeyDictionary[Consumer, str] = weakref.WeakKeyDictionary()
"""Consumer -> its group."""


def watch_ingress(
    directory: DirectoryFollower, tasks: TaskFollower | None, lost_after_s: float
) -> None:
    """An ingress's followers: nodes, replicas and tasks are read from them."""
    task_ref = weakref.ref(tasks) if tasks is not None else None
    _ingresses.append(IngressSource(weakref.ref(directory), task_ref, lost_after_s))
    _ingresses[:] = [s for s in _ingresses if s.directory() is not None]


def watch_scheduler(runner: SchedulerRunner) -> None:
    """A scheduler's runner: queues are read from its state."""
    _keep(_schedulers, runner)


def watch_projector(projector: Projector) -> None:
    _keep(_projectors, projector)


def watch_consumer(group: str, consumer: Consumer) -> None:
    """A consumer of `group` whose lag is reported (until it is gone)."""
    consumers[consumer] = group


def ingress() -> IngressSource | None:
    """The newest living ingress of this process."""
    for source in reversed(_ingresses):
        if source.directory() is not None:
            return source
    return None


def scheduler() -> SchedulerRunner | None:
    return _newest(_schedulers)


def projector() -> Projector | None:
    return _newest(_projectors)


def _keep(refs: list[weakref.ref[T]], item: T) -> None:
    refs.append(weakref.ref(item))
    refs[:] = [r for r in refs if r() is not None]


def _newest(refs: list[weakref.ref[T]]) -> T | None:
    for ref in reversed(refs):
        if (item := ref()) is not None:
            return item
    return None
