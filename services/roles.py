"""Running roles in one process: `ngpu up` runs them all on the embedded backends.

The roles (ingress over HTTP, scheduler, dispatcher, projector) share one bus and, for
the ingress and the projector, one ClickHouse client: chdb allows one engine per process
(DESIGN.md), so the roles that use the data dir live in the process that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from projections import ProjectionWriter, Projector, connect
from services.brc20 import Brc20Gate, provider_from_config
from services.bus import Bus, bus_from_settings
from services.dispatcher import CallPolicy, Dispatcher
from services.ingress import DirectoryFollower, IngressContext, create_app
from services.ingress.ratelimit import RateLimiter
from services.ingress.store import TaskStore
from services.ingress.taskfollower import TaskFollower
from services.ingress.tokens import load_or_create
from services.scheduler.runner import SchedulerRunner
from services.settings import Settings

log = logging.getLogger(__name__)
DATABASE = "ngpu"


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


def brc20_gate(settings: Settings) -> Brc20Gate:
    """The BRC-20 gate the settings describe (raises `Brc20ConfigError` when misconfigured)."""
    provider = provider_from_config(
        settings.resolved_brc20_provider,
        file=settings.brc20_file,
        url=settings.brc20_url,
        api_key=settings.brc20_api_key.get_secret_value() if settings.brc20_api_key else None,
        timeout_s=settings.brc20_timeout_s,
        cache_ttl_s=settings.brc20_cache_ttl_s,
        network=settings.btc_network,
    )
    return Brc20Gate(
        provider, settings.brc20_ticker, settings.brc20_min_balance, settings.btc_network
    )


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: `run_all` owns SIGINT/SIGTERM
    (uvicorn would re-raise them after serving, killing the process before the roles
    and the demo's node agent are stopped)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


OnReady = Callable[[Credentials], Coroutine[Any, Any, None] | None]


async def run_all(
    settings: Settings,
    *,
    on_ready: OnReady | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run every role on one bus until SIGINT/SIGTERM. `on_ready` is called (and awaited
    when it is a coroutine) once the HTTP server accepts connections; `on_stop` when a
    signal arrives, while everything still runs."""
    creds = credentials(settings)
    bus: Bus = bus_from_settings(settings)
    await bus.start()
    client = await asyncio.to_thread(connect, settings.resolved_clickhouse_dsn)
    writer = ProjectionWriter(client, DATABASE)
    await asyncio.to_thread(writer.ensure_schema)
    follower, tasks = DirectoryFollower(bus), TaskFollower(bus)
    gate = brc20_gate(settings)
    try:
        await follower.start()
        await tasks.start()
        context = IngressContext(
            settings, bus, follower, creds.admin_token, creds.join_token, tasks=tasks,
            store=TaskStore(client, DATABASE), gate=gate,
            limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        )  # fmt: skip
        await _serve(settings, context, bus, writer, creds, on_ready, on_stop)
    finally:
        await tasks.close()
        await follower.close()
        await gate.aclose()
        await bus.close()


async def _serve(
    settings: Settings,
    context: IngressContext,
    bus: Bus,
    writer: ProjectionWriter,
    creds: Credentials,
    on_ready: OnReady | None,
    on_stop: Callable[[], Awaitable[None]] | None,
) -> None:
    config = uvicorn.Config(
        create_app(context), host=settings.host, port=settings.port,
        log_level=settings.log_level, lifespan="off", access_log=False,
        timeout_graceful_shutdown=5,
    )  # fmt: skip
    server = _Server(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    policy = CallPolicy(settings.task_max_attempts, settings.max_response_bytes)
    roles = {
        "scheduler": SchedulerRunner(bus, settings).run(),
        "dispatcher": Dispatcher(
            bus, policy, max_concurrency=settings.dispatcher_concurrency
        ).run(),
        "projector": Projector(bus, writer).run(),
        "http": server.serve(),
    }
    running: set[asyncio.Task[Any]] = {
        asyncio.create_task(coro, name=name) for name, coro in roles.items()
    }
    while not server.started and not all(t.done() for t in running):  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.05)
    if server.started and on_ready is not None:
        result = on_ready(creds)
        if result is not None:
            await result
    signalled: asyncio.Task[Any] = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait({*running, signalled}, return_when=asyncio.FIRST_COMPLETED)
    signalled.cancel()
    done.discard(signalled)
    if stopping.is_set() and on_stop is not None:
        await on_stop()
    server.should_exit = True
    for task in running:
        if task.get_name() != "http":
            task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for finished in done:
        if not finished.cancelled() and (error := finished.exception()) is not None:
            raise error
