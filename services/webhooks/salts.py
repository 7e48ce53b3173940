"""Where the `webhooks` role learns each workspace's salt (`services.webhooks.secrets`):
`SecretSalts` folds the workspace topic into the current salt of each workspace, from its
checkpoint, then the log after it: the role's whole knowledge of workspaces. And the key
the secrets derive from, `webhook_key`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from dataclasses import dataclass, field

from events import (
    EventDecodeError,
    WebhookSecretRotated,
    WorkspaceDeleted,
    WorkspaceRegistered,
    topics,
)
from services.bus import Bus, Consumer, decode_record
from services.bus.progress import CatchUp
from services.checkpoints import checkpoint_store, fingerprint
from services.checkpoints.fold import FoldCheckpoints
from services.ingress.tokens import load_or_create
from services.readiness import Component
from services.settings import Settings

log = logging.getLogger(__name__)
_KEY_CONTEXT = b"ngpu webhook key v1"


def webhook_key(settings: Settings) -> bytes:
    """The key webhook secrets derive from; every ingress and webhooks process must hold
    the same. `NGPU_WEBHOOK_KEY`; else derived one-way from `NGPU_ADMIN_TOKEN` (which every
    process of a Kafka deployment can be given); else kept in the data dir (the embedded
    mode runs every role in one process)."""
    if settings.webhook_key:
        return settings.webhook_key.get_secret_value().encode()
    if settings.admin_token:
        admin = settings.admin_token.get_secret_value().encode()
        return hmac.new(admin, _KEY_CONTEXT, hashlib.sha256).digest()
    key, _ = load_or_create(settings.data_dir / "webhook-key", None)
    return key.encode()


@dataclass(slots=True)
class Salts:
    """The current salt of each workspace; a deleted workspace's id maps to None (its
    tasks' webhooks are abandoned, not waited for). Pure; applying an event twice is
    applying it once."""

    current: dict[str, str | None] = field(default_factory=dict)

    def apply(self, event: object) -> None:
        match event:
            case WorkspaceRegistered():
                if event.workspace_id not in self.current:  # a redelivery keeps a rotation
                    self.current[event.workspace_id] = event.webhook_salt
            case WebhookSecretRotated():
                if self.current.get(event.workspace_id, "") is not None:
                    self.current[event.workspace_id] = event.salt
            case WorkspaceDeleted():
                self.current[event.workspace_id] = None


CHECKPOINT = "webhook-secrets"
CHECKPOINT_VERSION = fingerprint(CHECKPOINT, [Salts])


class SecretSalts:
    """Follows the workspace topic into `salts`, from its newest checkpoint. `ready` once
    it has folded what the topic held at its start."""

    def __init__(self, bus: Bus, checkpoint_interval_s: float = 30.0) -> None:
        self.bus = bus
        self.salts = Salts()
        self.checkpoints = FoldCheckpoints(
            checkpoint_store(bus), CHECKPOINT, CHECKPOINT_VERSION, checkpoint_interval_s
        )
        self.ready = Component("webhook secrets")
        self._consumer: Consumer | None = None

    def salt(self, workspace_id: str) -> str | None:
        """The workspace's salt; None when it was deleted; KeyError when not known (yet)."""
        return self.salts.current[workspace_id]

    async def run(self) -> None:
        """Catch up (`ready`), then follow until cancelled."""
        # Saved as a plain dict: the restricted unpickler of checkpoints admits builtins.
        resumed = await self.checkpoints.resume()
        if isinstance(resumed, dict):
            self.salts = Salts(resumed)
        self._consumer = consumer = self.bus.consumer(
            [topics.WORKSPACES], group=None, start="earliest",
            positions=self.checkpoints.positions,
        )  # fmt: skip
        try:
            await consumer.start()
            catch_up = CatchUp(CHECKPOINT, self.checkpoints.positions, await consumer.ends())
            if catch_up.done:
                self.ready.mark_caught_up()
            while True:
                records = await consumer.fetch(1000, timeout_s=1.0)
                for record in records:
                    try:
                        self.salts.apply(decode_record(record).event)
                    except EventDecodeError:
                        log.warning("skipping undecodable record %s/%d@%d",
                                    record.topic, record.partition, record.offset)  # fmt: skip
                    self.checkpoints.folded(record)
                if not catch_up.done:
                    await catch_up.fetched(records, consumer)
                    if catch_up.done:
                        self.ready.mark_caught_up()
                await self.checkpoints.save_due(lambda: dict(self.salts.current))
        finally:
            with contextlib.suppress(Exception):
                await consumer.close()

    async def wait_ready(self) -> None:
        while not self.ready.caught_up:  # noqa: ASYNC110 - a Component has no event
            await asyncio.sleep(0.05)
