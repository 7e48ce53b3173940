"""Running roles in one process: `ngpu up` runs them all on the embedded backends.

Each role is started here, in dependency order, and stopped in reverse; the HTTP server
runs in the same event loop as the roles behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn

from services.bus import Bus, bus_from_settings
from services.ingress import DirectoryFollower, IngressContext, create_app
from services.ingress.tokens import load_or_create
from services.scheduler.runner import SchedulerRunner
from services.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Credentials:
    admin_token: str
    admin_token_source: str
    join_token: str
    join_token_source: str


def credentials(settings: Settings) -> Credentials:
    """The admin and node join tokens: from the environment, else kept in the data dir."""
    admin, admin_src = load_or_create(
        settings.data_dir / "admin-token",
        settings.admin_token.get_secret_value() if settings.admin_token else None,
    )
    join, join_src = load_or_create(
        settings.data_dir / "node-join-token",
        settings.node_join_token.get_secret_value() if settings.node_join_token else None,
    )
    return Credentials(admin, admin_src, join, join_src)


async def run_all(
    settings: Settings, *, on_ready: Callable[[Credentials], None] | None = None
) -> None:
    """Run the ingress (HTTP on `settings.host:port`) and the scheduler on one bus until
    SIGINT/SIGTERM. `on_ready` is called once the HTTP server accepts connections."""
    creds = credentials(settings)
    bus: Bus = bus_from_settings(settings)
    await bus.start()
    follower = DirectoryFollower(bus)
    scheduler = SchedulerRunner(bus, settings)
    try:
        await follower.start()
        context = IngressContext(settings, bus, follower, creds.admin_token, creds.join_token)
        config = uvicorn.Config(
            create_app(context), host=settings.host, port=settings.port,
            log_level=settings.log_level, lifespan="off", access_log=False,
        )  # fmt: skip
        server = uvicorn.Server(config)
        scheduling = asyncio.create_task(scheduler.run(), name="scheduler")
        serving = asyncio.create_task(server.serve(), name="http")
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.05)
        if server.started and on_ready is not None:
            on_ready(creds)
        done, _ = await asyncio.wait({scheduling, serving}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        scheduling.cancel()
        for task in (serving, scheduling):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        await follower.close()
        await bus.close()
