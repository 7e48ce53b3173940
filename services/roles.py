"""Running roles in one process: `ngpu up` runs them all on the embedded backends,
`ngpu serve --roles ...` any subset against Kafka.

The roles (ingress over HTTP, scheduler, dispatcher, projector, webhooks) share one bus
and, for the ingress and the projector, one ClickHouse client: chdb allows one engine per
process (docs/architecture.md), so the roles that use the data dir live in the process that
holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

import uvicorn
from clickhouse_connect.driver.client import Client

from events.errors import NgpuError
from projections import ProjectionWriter, Projector, connect
from projections.errors import StoreError
from projections.projector import GROUP as PROJECTOR_GROUP
from services.brc20 import Brc20Gate, provider_from_config
from services.bus import Bus, BusError, EmbeddedBus, bus_from_settings
from services.bus.retention import keep_pruning, retention_policy
from services.dispatcher import CallPolicy, Dispatcher
from services.hosts import HostPolicy
from services.ingress import DirectoryFollower, IngressContext, create_app, server_config
from services.ingress.outputhub import OutputHub
from services.ingress.ratelimit import RateLimiter
from services.ingress.store import TaskStore
from services.ingress.taskfollower import TaskFollower
from services.ingress.tokens import load_or_create
from services.output import OutputFollower, OutputSink, TopicSink
from services.readiness import Component, Readiness
from services.scheduler.runner import SchedulerRunner
from services.settings import Settings
from services.webhooks.retry import RetryPolicy
from services.webhooks.salts import webhook_key
from services.webhooks.targets import policy_from_settings
from services.webhooks.worker import WebhookWorker

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


def node_call_key(settings: Settings) -> bytes:
    """The key deployment secrets derive from (`services.callsign`); the ingress and the
    dispatcher must hold the same one. `NGPU_NODE_CALL_KEY`; else derived one-way from
    `NGPU_ADMIN_TOKEN` (which every process of a Kafka deployment shares); else kept in
    the data dir (the embedded mode runs every role in one process)."""
    if settings.node_call_key:
        return settings.node_call_key.get_secret_value().encode()
    if settings.admin_token:
        admin = settings.admin_token.get_secret_value().encode()
        return hmac.new(admin, b"ngpu node call key v1", hashlib.sha256).digest()
    key, _ = load_or_create(settings.data_dir / "node-call-key", None)
    return key.encode()


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


Role = Literal["ingress", "scheduler", "dispatcher", "projector", "webhooks"]
ALL_ROLES: frozenset[Role] = frozenset(get_args(Role))


class RolesError(NgpuError):
    """A set of roles that cannot run as asked (the message says why and what to do)."""


def parse_roles(text: str) -> frozenset[Role]:
    """`"ingress,projector"` -> the roles; raises `RolesError` naming an unknown one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_ROLES]
    if unknown or not names:
        raise RolesError(
            f"unknown role(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(sorted(ALL_ROLES))}"
        )
    return frozenset(cast(Role, name) for name in names)


def check_roles(settings: Settings, roles: frozenset[Role]) -> None:
    """Refuse combinations that would run but misbehave."""
    if settings.bus == "embedded" and roles != ALL_ROLES:
        raise RolesError(
            "the embedded log keeps consumer groups inside one process, so its roles cannot "
            "be split across processes: set NGPU_BUS=kafka, or run every role (ngpu up)"
        )
    if (
        settings.bus == "kafka"
        and "webhooks" in roles
        and not (settings.webhook_key or settings.admin_token)
    ):
        raise RolesError(
            "the webhooks role signs with secrets the ingress answered, derived from a key "
            "they must share: set NGPU_WEBHOOK_KEY (or NGPU_ADMIN_TOKEN) alike on both"
        )
    if (
        settings.resolved_clickhouse_dsn.startswith("chdb:")
        and "ingress" in roles
        and ("projector" not in roles)
    ):
        raise RolesError(
            "with an embedded ClickHouse (chdb) the ingress reads the projections of its own "
            "process: run --roles ingress,projector, or set NGPU_CLICKHOUSE_DSN to a server"
        )
    if settings.metrics_port is not None:
        if "ingress" in roles and settings.metrics_port == settings.port:
            raise RolesError("NGPU_METRICS_PORT must differ from NGPU_PORT (the ingress's)")
        if not (settings.metrics_public or settings.admin_token or "ingress" in roles):
            raise RolesError(
                "NGPU_METRICS_PORT serves /metrics to the admin token: set NGPU_ADMIN_TOKEN, "
                "or NGPU_METRICS_PUBLIC=true on a port only your scraper reaches"
            )
    if (
        settings.bus == "kafka"
        and roles & {"ingress", "dispatcher"}
        and not (settings.node_call_key or settings.admin_token)
    ):
        raise RolesError(
            "the dispatcher signs node calls with deployment secrets the ingress hands to "
            "nodes, derived from a key they must share: set NGPU_NODE_CALL_KEY (or "
            "NGPU_ADMIN_TOKEN) alike on both"
        )


def projector_group(settings: Settings) -> str:
    """The projector's consumer group: one group for a ClickHouse server (the projector
    processes share its work). With chdb every store is a full copy of the projections,
    so each gets a group of its own, named in a file inside the store: stable across
    restarts, and new when the store is new (a wiped store replays the whole log instead
    of resuming where the old one stopped)."""
    dsn = settings.resolved_clickhouse_dsn
    if not dsn.startswith("chdb:"):
        return PROJECTOR_GROUP
    marker = Path(urlsplit(dsn).path) / "ngpu-projector-group"
    if marker.exists():
        return marker.read_text().strip()
    marker.parent.mkdir(parents=True, exist_ok=True)
    group = f"{PROJECTOR_GROUP}-{uuid.uuid4().hex[:12]}"
    marker.write_text(group + "\n")
    return group


OnReady = Callable[[], Coroutine[Any, Any, None] | None]


async def run_all(
    settings: Settings,
    creds: Credentials,
    *,
    on_ready: OnReady | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Every role in this process (`ngpu up`); see `run_roles`."""
    await run_roles(settings, ALL_ROLES, creds, on_ready=on_ready, on_stop=on_stop)


async def run_roles(
    settings: Settings,
    roles: frozenset[Role],
    creds: Credentials | None,
    *,
    on_ready: OnReady | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run `roles` on one bus until SIGINT/SIGTERM (`creds` are needed by the ingress).
    `on_ready` is called (and awaited when it is a coroutine) once every role started
    (with the ingress: once the HTTP server accepts connections, which is before the
    roles have caught up with the log: `/readyz` says when they have); `on_stop` when a
    signal arrives, while everything still runs (`on_ready` is cancelled if it still
    runs)."""
    check_roles(settings, roles)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    bus: Bus = bus_from_settings(settings)
    await bus.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(bus.close)
        jobs: dict[str, Coroutine[Any, Any, None]] = {}
        server: _Server | None = None
        readiness = Readiness()
        # Streamed output: in process on the embedded log, else through the output topic.
        hub = OutputHub()
        sink: OutputSink = hub
        if settings.bus == "kafka" and "dispatcher" in roles:
            sink = topic_sink = TopicSink(bus)
            await topic_sink.start()
            stack.push_async_callback(topic_sink.close)
        client: Client | None = None
        if roles & {"ingress", "projector"}:
            client = await asyncio.to_thread(connect, settings.resolved_clickhouse_dsn)
            writer = ProjectionWriter(
                client, DATABASE, body_retention_days=settings.body_retention_days
            )
            await asyncio.to_thread(writer.ensure_schema)
            projector: Projector | None = None
            if "projector" in roles:
                projector = Projector(
                    bus, writer, group=projector_group(settings),
                    linger_s=settings.projector_linger_s, ready=readiness.component("projector"),
                )  # fmt: skip
                jobs["projector"] = _restarting("projector", projector.run, stopping)
            if "ingress" in roles:
                if creds is None:
                    raise RolesError("the ingress role needs the admin and node join tokens")
                flush = projector.flush if projector else None
                server, follower = await _ingress(
                    settings, bus, client, creds, stack, flush, readiness, hub
                )
                jobs["http"] = server.serve()
                jobs["directory"] = follower.run()  # caught up while the server answers 503
        if "scheduler" in roles:
            decider = readiness.component("scheduler")
            jobs["scheduler"] = _restarting(
                "scheduler", lambda: _scheduler(settings, bus, stopping, decider), stopping
            )
        if "dispatcher" in roles:
            policy = CallPolicy(
                settings.task_max_attempts, settings.max_response_bytes,
                hosts=HostPolicy.from_settings(settings.node_host_allow, settings.host),
                call_key=node_call_key(settings),
            )  # fmt: skip
            concurrency, caller = settings.dispatcher_concurrency, readiness.component("dispatcher")
            jobs["dispatcher"] = _restarting(
                "dispatcher",
                lambda: Dispatcher(
                    bus, policy, max_concurrency=concurrency, ready=caller, output=sink
                ).run(),
                stopping,
            )  # fmt: skip
        if "webhooks" in roles:
            jobs["webhooks"] = _restarting(
                "webhooks", _webhooks(settings, bus, readiness.component("webhooks")), stopping
            )
        if settings.metrics_port is not None:
            jobs["metrics"] = _metrics_server(settings, bus, client, creds, readiness).serve()
        if isinstance(bus, EmbeddedBus):  # Kafka applies its topics' retention itself
            jobs["retention"] = keep_pruning(bus, retention_policy(settings.log_retention_hours))
        # Jobs that end by themselves once `stopping` is set (the rest are cancelled).
        graceful = {"http", "scheduler"} if settings.bus == "kafka" else {"http"}
        await _supervise(jobs, graceful, server, stopping, on_ready, on_stop, readiness)


def _webhooks(settings: Settings, bus: Bus, ready: Component) -> Callable[[], Awaitable[None]]:
    """The webhooks role, made anew at each (re)start: it folds its state from the log."""
    key = webhook_key(settings)
    hosts = policy_from_settings(settings.webhook_host_allow)
    retry = RetryPolicy(
        settings.webhook_retry_base_s, settings.webhook_retry_max_s,
        settings.webhook_retry_window_s,
    )  # fmt: skip
    if settings.bus == "kafka" and settings.webhook_retry_window_s > (
        settings.log_retention_hours * 3600
    ):
        log.warning(
            "NGPU_WEBHOOK_RETRY_WINDOW_S exceeds NGPU_LOG_RETENTION_HOURS: retries still "
            "pending when their task's records age out of Kafka are lost at a restart"
        )

    def run() -> Awaitable[None]:
        return WebhookWorker(
            bus, key, hosts=hosts, retry=retry, ready=ready,
            checkpoint_interval_s=settings.checkpoint_interval_s,
        ).run()  # fmt: skip

    return run


async def _ingress(
    settings: Settings,
    bus: Bus,
    client: Client,
    creds: Credentials,
    stack: contextlib.AsyncExitStack,
    flush_projections: Callable[[], None] | None,
    readiness: Readiness,
    hub: OutputHub,
) -> tuple[_Server, DirectoryFollower]:
    """The HTTP server of the ingress role, and its directory follower, to be `run` beside
    it: the server answers (`/healthz`, `/readyz`, and 503 elsewhere) while the directory
    catches up with the log. The task follower is started; both are closed by `stack`.
    `flush_projections` when the projector runs in this process. Streamed output reaches
    `hub` (on Kafka from the output topic, followed from its end as of now)."""
    follower = DirectoryFollower(
        bus, settings.checkpoint_interval_s, ready=readiness.component("directory")
    )
    tasks = TaskFollower(bus, ready=readiness.component("tasks"))
    gate = brc20_gate(settings)
    stack.push_async_callback(gate.aclose)
    stack.push_async_callback(follower.close)
    tasks.on_status = hub.changed
    await tasks.start()
    stack.push_async_callback(tasks.close)
    if settings.bus == "kafka":
        output = OutputFollower(bus, hub.emit)
        await output.start()
        stack.push_async_callback(output.close)
    context = IngressContext(
        settings, bus, follower, creds.admin_token, creds.join_token, tasks=tasks,
        store=TaskStore(client, DATABASE), gate=gate,
        limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        ip_limiter=RateLimiter(settings.brc20_check_rate_per_s, settings.brc20_check_burst),
        flush_projections=flush_projections, readiness=readiness,
        node_call_key=node_call_key(settings), webhook_key=webhook_key(settings), output=hub,
    )  # fmt: skip
    return _Server(server_config(create_app(context), settings)), follower


def _metrics_server(
    settings: Settings,
    bus: Bus,
    client: Client | None,
    creds: Credentials | None,
    readiness: Readiness,
) -> _Server:
    """`/metrics`, `/healthz` and `/readyz` on `NGPU_METRICS_PORT`: how a process without
    an ingress (a scheduler, dispatcher, projector or webhooks process) is scraped and
    probed. The admin token is the ingress's, else `NGPU_ADMIN_TOKEN`."""
    from services.health import Health, bus_probe, store_probe
    from services.metrics.exposition import MetricsEndpoint, metrics_app

    token = creds.admin_token if creds else None
    if token is None and settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
    store = store_probe(client) if client is not None else None
    health = Health(readiness, {"bus": bus_probe(bus), "store": store})
    app = metrics_app(MetricsEndpoint(token, public=settings.metrics_public), health)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.metrics_port or 0, lifespan="off",
        access_log=False, log_level=settings.log_level,
    )  # fmt: skip
    return _Server(config)


async def _scheduler(
    settings: Settings, bus: Bus, stopping: asyncio.Event, ready: Component
) -> None:
    """The embedded log has one scheduler (its process holds the log); on Kafka the
    scheduler is the faust app, whose workers elect one active member."""
    if settings.bus == "kafka":
        from services.scheduler.distributed import run_scheduler_app

        await run_scheduler_app(settings, stopping, ready=ready)
    else:
        await SchedulerRunner(bus, settings, ready=ready).run()


_RESTART_MIN_S = 0.5
_RESTART_MAX_S = 10.0


async def _restarting(
    name: str, run: Callable[[], Awaitable[None]], stopping: asyncio.Event
) -> None:
    """Run a role, and run it again whenever it stops on an unavailable bus or store (a
    full disk, a broker away): an outage of writes must not end the process, whose other
    roles carry on (reads are served, submissions answered 503). The pause between
    attempts grows from 0.5 s to 10 s while the failures repeat. A role runs again as on
    a process start: the scheduler replays the log, consumers resume from their groups'
    commits. Any other error is a bug, and ends the process."""
    delay = _RESTART_MIN_S
    while True:
        began = time.monotonic()
        try:
            await run()
            return
        except (BusError, StoreError) as exc:
            if stopping.is_set():
                return
            if time.monotonic() - began > 6 * _RESTART_MAX_S:
                delay = _RESTART_MIN_S  # it had been running: a new outage
            log.warning("%s stopped: %s; starting it again in %.1f s", name, exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
            return
        delay = min(_RESTART_MAX_S, delay * 2)


async def _supervise(
    jobs: dict[str, Coroutine[Any, Any, None]],
    graceful: set[str],
    server: _Server | None,
    stopping: asyncio.Event,
    on_ready: OnReady | None,
    on_stop: Callable[[], Awaitable[None]] | None,
    readiness: Readiness,
) -> None:
    """Run `jobs` until a signal or until one of them ends; re-raise the first error.
    `on_ready` runs beside them (a signal cancels it); an error of it ends them too."""
    running: set[asyncio.Task[Any]] = {
        asyncio.create_task(coro, name=name) for name, coro in jobs.items()
    }
    while server is not None and not server.started and not all(t.done() for t in running):  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.05)
    announce = on_ready if server is None or server.started else None
    settling = asyncio.create_task(_settle(announce, readiness), name="settling")
    signalled: asyncio.Task[Any] = asyncio.create_task(stopping.wait())
    waiting = {*running, signalled, settling}
    while True:
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if done != {settling} or settling.exception() is not None:
            break
        waiting.discard(settling)  # started and caught up: run on
    signalled.cancel()
    done.discard(signalled)
    if not settling.done():
        settling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await settling
    if stopping.is_set() and on_stop is not None:
        await on_stop()
    stopping.set()  # the faust scheduler leaves its group on this, not on cancellation
    if server is not None:
        server.should_exit = True
    for task in running:
        if task.get_name() not in graceful:
            task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for finished in done:
        if not finished.cancelled() and (error := finished.exception()) is not None:
            raise error


async def _settle(on_ready: OnReady | None, readiness: Readiness) -> None:
    """Call `on_ready`, then wait for every role to catch up with the log, and take what
    the start built out of the collector's sight."""
    if on_ready is not None:
        result = on_ready()
        if result is not None:
            await result
    await readiness.wait()
    # What exists once the roles have caught up (modules, the app, the folded state)
    # lives about as long as the process: out of the collector's sight, so that a full
    # collection no longer walks it (it stalled the event loop 80-110 ms at a time under
    # load in `ngpu up`).
    gc.collect()  # the startup's garbage first: frozen, it would never be freed
    gc.freeze()
