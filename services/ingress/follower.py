"""Keeps a `Directory` folded from the bus, and lets a request wait until its own writes
(or any change) are visible: read-your-writes across processes.

The directory is checkpointed every `checkpoint_interval_s`; a start loads the newest
checkpoint (any ingress's: the fold is the same everywhere) and folds only the log after
it, up to the ends the log had when it started, logging its progress. `ready` says when
that is done: `start()` returns then; `run()` (for a caller that serves meanwhile, and
answers 503 until it is) goes on following."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from events import EventDecodeError, GpuInfo, NodeRegistered, WorkspaceRegistered, topics
from events.deployment import DeploymentRequested
from services.bus import Bus, Consumer, Record, decode_record
from services.bus.progress import CatchUp
from services.checkpoints import checkpoint_store, fingerprint
from services.checkpoints.fold import FoldCheckpoints
from services.ingress.directory import DeploymentView, Directory, NodeView, WorkspaceView
from services.readiness import Component

log = logging.getLogger(__name__)
FOLLOWED_TOPICS = (topics.WORKSPACES, topics.NODES, topics.LIVENESS)
CHECKPOINT = "directory"
CHECKPOINT_VERSION = fingerprint(
    CHECKPOINT,
    [Directory, WorkspaceView, DeploymentView, NodeView, WorkspaceRegistered, NodeRegistered,
     DeploymentRequested, GpuInfo],
)  # fmt: skip


class DirectoryFollower:
    """Folds the workspace, node and liveness topics into `directory`, from its newest
    checkpoint, else from the beginning."""

    def __init__(
        self, bus: Bus, checkpoint_interval_s: float = 30.0, *, ready: Component | None = None
    ) -> None:
        self.bus = bus
        self.directory = Directory()
        self.checkpoints = FoldCheckpoints(
            checkpoint_store(bus), CHECKPOINT, CHECKPOINT_VERSION, checkpoint_interval_s
        )
        self.ready = ready or Component("directory")
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._consumer: Consumer | None = None

    async def start(self) -> None:
        """Fold everything already in the log, then keep following in the background."""
        await self._catch_up()
        self._task = asyncio.create_task(self._run(), name="directory-follower")

    async def run(self) -> None:
        """Fold everything already in the log (`ready` is caught up then), then keep
        following, until cancelled."""
        await self._catch_up()
        await self._run()

    async def _catch_up(self) -> None:
        resumed = await self.checkpoints.resume()
        if isinstance(resumed, Directory):
            self.directory = resumed
        self._consumer = consumer = self.bus.consumer(
            FOLLOWED_TOPICS, group=None, start="earliest", positions=self.checkpoints.positions
        )
        await consumer.start()
        catch_up = CatchUp("directory", self.checkpoints.positions, await consumer.ends())
        while not catch_up.done:
            await catch_up.fetched(await self._fold(timeout_s=1.0), consumer)
        self.ready.mark_caught_up()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.close()

    async def _run(self) -> None:
        while True:
            try:
                await self._step(timeout_s=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following; a bad batch must not stop the control plane
                log.exception("directory follower failed; retrying")
                await asyncio.sleep(1.0)

    async def _step(self, timeout_s: float) -> None:
        await self._fold(timeout_s)
        await self.checkpoints.save_due(lambda: self.directory)

    async def _fold(self, timeout_s: float) -> list[Record]:
        assert self._consumer is not None, "started"
        records = await self._consumer.fetch(1000, timeout_s=timeout_s)
        for record in records:
            try:
                self.directory.apply(decode_record(record))
            except EventDecodeError:
                log.warning("skipping undecodable record %s/%d@%d",
                            record.topic, record.partition, record.offset)  # fmt: skip
            self.checkpoints.folded(record)
        if records:
            async with self._changed:
                self._changed.notify_all()
        return records

    def has_seen(self, records: Sequence[Record]) -> bool:
        positions = self.checkpoints.positions
        return all(
            positions.get((r.topic, r.partition), 0) > r.offset
            for r in records
            if r.topic in FOLLOWED_TOPICS
        )

    async def wait_for(self, records: Sequence[Record], timeout_s: float = 10.0) -> None:
        """Return once every record (as returned by publish) is folded into the directory."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: self.has_seen(records))

    async def wait_for_change(self, timeout_s: float) -> None:
        """Return after the next batch is folded, or after `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self._changed:
                await self._changed.wait()
