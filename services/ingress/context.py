"""What the ingress routes share: settings, the bus, the followers of the log, the task
store (and a way to flush the projector beside it), the BRC-20 gate, the rate limiters,
the credentials, and the readiness of the process."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from events import Envelope, Event
from services.brc20 import Brc20Gate, NoProvider
from services.bus import Bus, BusError, Record, publish_events
from services.health import Health, bus_probe, store_probe
from services.hosts import HostPolicy
from services.ingress.clientip import Network, parse_networks
from services.ingress.errors import ServiceUnavailable
from services.ingress.follower import DirectoryFollower
from services.ingress.outputhub import OutputHub
from services.ingress.ratelimit import RateLimiter
from services.ingress.store import TaskStore
from services.ingress.taskfollower import TaskFollower
from services.metrics import sources
from services.readiness import Readiness
from services.secretbox import SecretBox
from services.settings import Settings


@dataclass(slots=True)
class IngressContext:
    """Started by its owner (`services.roles`, or a test); the routes only use it.
    `tasks` and `store` are needed by the NGPU API only. `readiness` is the process's
    (`/readyz`); the followers' own are added to it."""

    settings: Settings
    bus: Bus
    follower: DirectoryFollower
    admin_token: str
    join_token: str
    tasks: TaskFollower | None = None
    store: TaskStore | None = None
    gate: Brc20Gate = field(default_factory=lambda: Brc20Gate(NoProvider()))
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0, 1))
    """Per workspace."""
    ip_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0, 1))
    """Per client IP, for the BRC-20 check (which takes no bearer)."""
    proxies: tuple[Network, ...] = ()
    hosts: HostPolicy | None = None
    """What a node may register as its host; from the settings when not given."""
    register_limiter: RateLimiter | None = None
    """Node registrations per client IP; from the settings when not given."""
    registration_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    flush_projections: Callable[[], None] | None = None
    """Asks this process's projector to write what it holds now (when it runs here)."""
    readiness: Readiness = field(default_factory=Readiness)
    node_call_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    """Derives each deployment's secret (`services.callsign`); the dispatcher's must match."""
    webhook_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    """Derives each workspace's webhook secret (`services.webhooks.secrets`); the webhooks
    role's must match."""
    output: OutputHub | None = None
    """Where streamed output and state changes of tasks reach this ingress's requests (the
    task follower's `on_status` must feed it); None: streaming is not served."""
    secret_box: SecretBox | None = None
    """Seals and opens workspaces' registry credentials; from `NGPU_SECRETS_KEY` when not
    given (None when that is unset: registry credentials are refused)."""
    health: Health | None = None
    """`/readyz`: the readiness, and probes of the bus and the store (made when not given)."""

    def __post_init__(self) -> None:
        self.proxies = self.proxies or parse_networks(self.settings.trusted_proxies)
        settings = self.settings
        if self.hosts is None:
            self.hosts = HostPolicy.from_settings(settings.node_host_allow, settings.host)
        if self.register_limiter is None:
            self.register_limiter = RateLimiter(
                settings.node_register_rate_per_s, settings.node_register_burst
            )
        if self.secret_box is None and settings.secrets_key is not None:
            self.secret_box = SecretBox.parse(settings.secrets_key.get_secret_value())
        self.readiness.add(self.follower.ready)
        if self.tasks is not None:
            self.readiness.add(self.tasks.ready)
        if self.health is None:
            store = store_probe(self.store.client) if self.store is not None else None
            self.health = Health(self.readiness, {"bus": bus_probe(self.bus), "store": store})
        sources.watch_ingress(self.follower, self.tasks, settings.node_lost_after_s)

    async def publish(
        self, events: Iterable[Envelope | Event], *, visible: bool = True
    ) -> list[Record]:
        """Publish durably; with `visible`, return only once the directory shows them, so
        the caller's next read sees its own write. A bus failure becomes a 503."""
        try:
            records = await publish_events(self.bus, events)
        except BusError as exc:
            raise ServiceUnavailable("the event bus is unavailable; try again later") from exc
        if visible:
            await self.follower.wait_for(records)
        return records
