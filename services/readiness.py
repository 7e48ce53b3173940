"""Whether a process has finished starting: every role in it has caught up with the log.

Each part that folds or reads the log before it can do its job (the ingress's directory
and task followers, the scheduler, the projector, the dispatcher) is a named `Component`
that marks itself caught up once it has read what the log held when it started; the
process's `Readiness` is ready once all of its components are. `/readyz` answers from it.

Readiness is about the start: a component that was caught up stays so, even when its
role is started again later (an outage of the bus): the process keeps serving what it
can meanwhile, and an unready answer would take it out of a load balancer for nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class Component:
    """One part of a process that catches up with the log. Owned by that part, which
    calls `mark_caught_up()` (idempotent) once it has; alone, or in a `Readiness`."""

    __slots__ = ("_listeners", "caught_up", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.caught_up = False
        self._listeners: list[Callable[[], None]] = []

    def mark_caught_up(self) -> None:
        if self.caught_up:
            return
        self.caught_up = True
        for listener in self._listeners:
            listener()

    def __repr__(self) -> str:
        return f"Component({self.name!r}, caught_up={self.caught_up})"


class Readiness:
    """The components of one process, in the order they were added. Logs once when the
    last of them catches up."""

    def __init__(self) -> None:
        self._components: list[Component] = []
        self._announced = False
        self._ready = asyncio.Event()

    def component(self, name: str) -> Component:
        """A new component named `name`, added to this process."""
        return self.add(Component(name))

    def add(self, component: Component) -> Component:
        """Add `component` (once: adding it again does nothing); returns it."""
        if not any(c is component for c in self._components):
            self._components.append(component)
            component._listeners.append(self._changed)
            self._announced = self._announced and component.caught_up
        return component

    @property
    def ready(self) -> bool:
        return all(c.caught_up for c in self._components)

    @property
    def waiting_for(self) -> list[str]:
        """The names of the components not caught up yet (empty once ready)."""
        return [c.name for c in self._components if not c.caught_up]

    async def wait(self) -> None:
        """Return once every component has caught up."""
        if not self.ready:
            self._ready.clear()
            await self._ready.wait()

    def _changed(self) -> None:
        if not self.ready:
            return
        self._ready.set()
        if not self._announced:
            self._announced = True
            names = ", ".join(c.name for c in self._components)
            log.info("ready: caught up with the log (%s)", names)


__all__ = ["Component", "Readiness"]
