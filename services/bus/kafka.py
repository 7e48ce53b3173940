"""The Kafka bus: the `Bus` on Apache Kafka through aiokafka.

Topic names and group ids on the broker carry `namespace` as a prefix (so environments and
tests can share a broker); callers only ever see logical topic names. A topic is created
with its `topology` spec before it is first published to or consumed from.

Publishes go through one idempotent producer with `acks=all`: a record is acknowledged
once every in-sync replica holds it, and the broker drops the retries' duplicates. The
idempotent producer of aiokafka retries a retriable failure forever, so the bus bounds
each publish itself: after `publish_timeout_s`, or on any delivery error, the publish
raises `BusUnavailable` and the producer is abandoned with everything it still holds, so
a failed publish is not stored later behind the caller's back (only a request already
on the wire when it failed may have been stored). The next publish starts a new producer.

aiokafka reconnects on its own: after a broker restart, publishes succeed again and
consumers continue from their positions.

Every client of the bus connects with the same `KafkaSecurity` (TLS, SASL). A start that
cannot connect says why when the cause is TLS or SASL (an untrusted certificate, refused
credentials), which aiokafka's own error leaves out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from events import topics as event_topics
from services.bus import topology
from services.bus.errors import BusError, BusUnavailable
from services.bus.outage import OutageLog
from services.bus.protocol import Outgoing, Record, StartAt
from services.bus.security import KafkaSecurity, KafkaSecurityError, why_refused

log = logging.getLogger(__name__)

_LINGER_MS = 0
"""How long the producer waits for more records to share a request with: none (aiokafka
waits at least a few ms for any linger, costing ~3 ms a publish at 2 ms; records that
arrive while a request is in flight still share the next one)."""
_JOIN_TIMEOUT_S = 30.0
"""How long a consumer's `start()` waits to connect and receive its partitions."""
_TOPIC_POLL_S = 0.1
"""How often a new topic's metadata is checked until every partition has a leader."""


def _being_cancelled() -> bool:
    """Whether the current task itself was asked to cancel (not an awaited future)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _failure(exc: KafkaError, doing: str) -> BusError:
    """A Kafka error as the bus's: `BusUnavailable` when retrying later may succeed."""
    kind = BusUnavailable if exc.retriable else BusError
    return kind(f"{doing} failed: {exc}")


def _check_sizes(items: list[Outgoing]) -> None:
    """Refuse a record its topic would reject, before any record of the call is sent (a
    delivery failure would cost the producer, and every publish sharing it)."""
    for item in items:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(item.key.encode(), item.value, [])
        limit = topology.spec_for(item.topic).max_message_bytes
        if size > limit:
            raise BusError(f"a record of {size} bytes exceeds the {limit} bytes {item.topic} takes")


async def _abort(producer: Any) -> None:
    """Stop `producer` without delivering what it still holds; publishes still waiting on
    it fail by their own timeout. aiokafka has no public way to do this (`stop()` waits
    for delivery, forever while the broker is down), hence its internals."""
    sender_task = producer._sender.sender_task
    sender_task.cancel()
    await asyncio.wait([sender_task])  # a request already on the wire finishes first
    producer._closed = True  # as `stop()` marks it
    await producer.client.close()


class KafkaBus:
    """The `Bus` on a Kafka cluster. Use from one event loop; `start()` before anything
    else. A publish fails with `BusUnavailable` within about `publish_timeout_s` when the
    cluster cannot store it."""

    def __init__(
        self,
        bootstrap: str,
        *,
        partitions: int = 8,
        replication_factor: int = 1,
        namespace: str = "",
        publish_timeout_s: float = 10.0,
        log_retention_ms: int = topology.DEFAULT_LOG_RETENTION_MS,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security or KafkaSecurity()
        try:
            self._client_options = self.security.client_options()  # one TLS context for all
        except KafkaSecurityError as exc:
            raise BusError(str(exc)) from exc
        self.partitions = partitions
        self.log_retention_ms = log_retention_ms
        self.replication_factor = replication_factor
        self.namespace = namespace
        self.publish_timeout_s = publish_timeout_s
        self._admin: Any = None
        self._producer: Any = None
        self._producer_lock = asyncio.Lock()
        self._topics_lock = asyncio.Lock()
        self._partition_counts: dict[str, int] = {}  # broker topic name -> partitions
        self._aborts: set[asyncio.Task[None]] = set()
        self._consumers: set[KafkaConsumer] = set()
        self._outage = OutageLog(f"Kafka bus at {bootstrap}", log)
        self._closed = False

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the admin client and the producer; `BusUnavailable` if the cluster
        cannot be reached."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            request_timeout_ms=self._request_timeout_ms,
            **self._client_options,
        )
        try:
            await admin.start()
        except KafkaError as exc:
            await admin.close()
            refusal = None
            if isinstance(exc, KafkaConnectionError):
                refusal = await why_refused(
                    self.bootstrap, self.security, self._client_options, self._request_timeout_ms
                )
            if refusal is not None:
                message = f"connecting to Kafka at {self.bootstrap} failed: {refusal}"
                raise BusError(message) from exc
            raise _failure(exc, f"connecting to Kafka at {self.bootstrap}") from exc
        self._admin = admin
        await self._current_producer()

    async def close(self) -> None:
        """Close the consumers, deliver what the producer holds (waiting up to
        `publish_timeout_s`, then dropping the rest), and disconnect."""
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers):
            await consumer.close()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.flush(), self.publish_timeout_s)
            except TimeoutError:
                log.warning("closing the Kafka bus with undelivered records; they are dropped")
            await _abort(producer)
        await asyncio.gather(*self._aborts)
        if self._admin is not None:
            await self._admin.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def reachable(self) -> bool:
        """For `/readyz`: a broker answers (cluster metadata) and writes are not failing."""
        if self._admin is None or self._closed:
            return False
        await self._admin.describe_cluster()
        return not self._outage.failing

    # names -------------------------------------------------------------------------------

    def broker_topic(self, topic: str) -> str:
        """The name of logical `topic` on the broker."""
        return self.namespace + topic

    def _logical(self, broker_topic: str) -> str:
        return broker_topic[len(self.namespace) :]

    def group_id(self, group: str) -> str:
        """The id of consumer group `group` on the broker."""
        return self.namespace + group

    def _record(self, message: Any) -> Record:
        key = message.key.decode(errors="replace") if message.key is not None else ""
        return Record(
            self._logical(message.topic),
            message.partition,
            message.offset,
            key,
            message.value if message.value is not None else b"",
            message.timestamp,
        )

    @property
    def _request_timeout_ms(self) -> int:
        return max(1, int(self.publish_timeout_s * 1000))

    # topics ------------------------------------------------------------------------------

    async def ensure_topics(self, topics: Iterable[str]) -> dict[str, int]:
        """Create the logical `topics` that do not exist yet (with their `topology` spec)
        and wait until the cluster serves them. Returns each one's broker name and
        partition count. Safe against other processes creating them at the same time."""
        names = {self.broker_topic(topic): topic for topic in topics}
        if not names.keys() <= self._partition_counts.keys():
            async with self._topics_lock:
                missing = {n: t for n, t in names.items() if n not in self._partition_counts}
                if missing:
                    await self._create(missing)
                    await self._learn_partitions(list(missing))
                    await self._align_retention(missing)
        return {name: self._partition_counts[name] for name in names}

    def _spec(self, topic: str) -> topology.TopicSpec:
        """The topic's spec, with this bus's retention for the task topic."""
        spec = topology.spec_for(topic)
        if topic == event_topics.TASKS:
            return replace(spec, retention_ms=self.log_retention_ms)
        return spec

    async def _align_retention(self, names: Mapping[str, str]) -> None:
        """Set the task topic's configs to its spec, so an existing topic takes this
        bus's retention (Kafka's AlterConfigs replaces a topic's whole set: all of the
        spec's configs are sent, and anything set on the topic by hand is reset)."""
        for name, topic in names.items():
            if topic != event_topics.TASKS:
                continue
            configs = self._spec(topic).configs(self.replication_factor)
            resource = ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)
            try:
                responses = await self._admin.alter_configs([resource])
            except KafkaError as exc:
                raise _failure(exc, f"setting the retention of Kafka topic {name}") from exc
            for response in responses:
                for code, message, *_ in response.resources:
                    if code:
                        raise BusError(f"altering Kafka topic {name} failed: {code} {message}")

    async def _create(self, missing: Mapping[str, str]) -> None:
        specs = [self._spec(topic) for topic in missing.values()]
        new_topics = [
            NewTopic(
                name,
                self.partitions,
                self.replication_factor,
                topic_configs=spec.configs(self.replication_factor),
            )
            for name, spec in zip(missing, specs, strict=True)
        ]
        try:
            response = await self._admin.create_topics(new_topics)
        except KafkaError as exc:
            raise _failure(exc, "creating Kafka topics") from exc
        for name, code, message in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise BusError(f"creating Kafka topic {name} failed: error {code}, {message}")

    async def _learn_partitions(self, names: list[str]) -> None:
        """Wait until every topic of `names` has a leader for each partition (a new
        topic takes a moment to reach the metadata), then remember its partition count."""
        while names:
            try:
                described = await self._admin.describe_topics(names)
            except KafkaError as exc:
                raise _failure(exc, "describing Kafka topics") from exc
            for topic in described:
                partitions = topic["partitions"]
                ready = partitions and all(p["leader"] >= 0 for p in partitions)
                if topic["error_code"] == 0 and ready:
                    self._partition_counts[topic["topic"]] = len(partitions)
            names = [name for name in names if name not in self._partition_counts]
            if names:
                await asyncio.sleep(_TOPIC_POLL_S)

    # publishing --------------------------------------------------------------------------

    async def publish(self, topic: str, key: str, value: bytes) -> Record:
        (record,) = await self.publish_many([Outgoing(topic, key, value)])
        return record

    async def publish_many(self, records: Sequence[Outgoing]) -> list[Record]:
        """Send every record, then wait until the cluster acknowledged them all (in the
        given order). Raises `BusUnavailable` after `publish_timeout_s`, `BusError` for a
        record too large for its topic; nothing of a failed call is acknowledged, and what
        was not yet sent is dropped."""
        items = list(records)
        if not items:
            return []
        if self._closed:
            raise BusError("the bus is closed")
        _check_sizes(items)
        producer = None
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                await self.ensure_topics({item.topic for item in items})
                producer = await self._current_producer()
                sent = await self._send(producer, items)
        except TimeoutError as exc:
            self._abandon(producer)
            self._outage.failed(f"no acknowledgement within {self.publish_timeout_s:g} s")
            raise BusUnavailable(
                f"Kafka at {self.bootstrap} did not acknowledge within "
                f"{self.publish_timeout_s:g} s; nothing was acknowledged"
            ) from exc
        except KafkaError as exc:
            self._abandon(producer)
            self._outage.failed(str(exc))
            raise _failure(exc, f"publishing to Kafka at {self.bootstrap}") from exc
        except BusUnavailable as exc:  # no producer or topics: the cluster cannot be reached
            self._outage.failed(str(exc.__cause__ or exc))
            raise
        except asyncio.CancelledError as exc:
            if _being_cancelled():
                raise
            # A delivery future cancelled under us (its producer was abandoned by another
            # call's timeout): a failed publish, not a cancellation of the caller.
            self._abandon(producer)
            self._outage.failed("the delivery was abandoned with its producer")
            raise BusUnavailable(
                f"the delivery to Kafka at {self.bootstrap} was abandoned; nothing was acknowledged"
            ) from exc
        self._outage.succeeded()
        return [
            Record(item.topic, meta.partition, meta.offset, item.key, item.value, meta.timestamp)
            for item, meta in zip(items, sent, strict=True)
        ]

    async def _send(self, producer: Any, items: list[Outgoing]) -> list[Any]:
        """Hand every record to `producer`, then wait for all acknowledgements."""
        futures = [
            await producer.send(self.broker_topic(item.topic), item.value, key=item.key.encode())
            for item in items
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def _current_producer(self) -> Any:
        """The producer in use, started if there is none (the last one was abandoned)."""
        if self._producer is not None:
            return self._producer
        async with self._producer_lock:
            if self._closed:
                raise BusError("the bus is closed")
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    **self._client_options,
                    enable_idempotence=True,
                    acks="all",
                    linger_ms=_LINGER_MS,
                    request_timeout_ms=self._request_timeout_ms,
                    max_request_size=topology.MAX_MESSAGE_BYTES,
                )
                try:
                    await producer.start()
                except BaseException as exc:
                    await producer.stop()
                    if isinstance(exc, KafkaError):
                        raise _failure(exc, f"connecting to Kafka at {self.bootstrap}") from exc
                    raise
                self._producer = producer
            return self._producer

    def _abandon(self, producer: Any) -> None:
        """Drop `producer` (if still in use) with everything it has not delivered."""
        if producer is None or producer is not self._producer:
            return
        self._producer = None
        task = asyncio.create_task(_abort(producer))
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)

    # consuming ---------------------------------------------------------------------------

    def consumer(
        self,
        topics: Sequence[str],
        group: str | None = None,
        start: StartAt = "earliest",
        positions: Mapping[tuple[str, int], int] | None = None,
    ) -> KafkaConsumer:
        if positions and group is not None:
            raise BusError("positions are for consumers without a group")
        return KafkaConsumer(self, topics, group, start, positions)

    def aiokafka_consumer(self, group: str | None, start: StartAt) -> Any:
        """A new, unstarted aiokafka consumer on this cluster, committing only when asked."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **self._client_options,
            group_id=None if group is None else self.group_id(group),
            enable_auto_commit=False,
            auto_offset_reset=start,
            heartbeat_interval_ms=500,
            session_timeout_ms=10_000,
            max_poll_interval_ms=300_000,
            max_partition_fetch_bytes=topology.MAX_MESSAGE_BYTES,
        )

    async def replay(self, topics: Sequence[str]) -> AsyncIterator[Record]:
        """Every record of `topics` up to each partition's end as of the call."""
        partition_counts = await self.ensure_topics(topics)
        everything = [TopicPartition(n, p) for n, c in partition_counts.items() for p in range(c)]
        reader = self.aiokafka_consumer(None, "earliest")
        try:
            await reader.start()
            reader.assign(everything)
            ends: dict[Any, int] = await reader.end_offsets(everything)
            for tp in everything:
                if await reader.position(tp) >= ends[tp]:
                    del ends[tp]
            while ends:
                batches = await reader.getmany(*ends, timeout_ms=1000)
                for tp, messages in batches.items():
                    for message in messages:
                        if message.offset < ends[tp]:
                            yield self._record(message)
                for tp in list(ends):
                    if await reader.position(tp) >= ends[tp]:
                        del ends[tp]
        except KafkaError as exc:
            raise _failure(exc, "replaying from Kafka") from exc
        finally:
            await reader.stop()


class _Membership(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    """One member's share of its group: the partitions' positions, kept across rebalances.

    A Kafka rebalance revokes every partition, and a partition this member gets back would
    restart from its committed offset, returning again what its caller already holds and
    will still commit. So a kept partition resumes where this member was, unless another
    member committed further while it was away (then that commit wins)."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.positions: dict[Any, int] = {}  # TopicPartition -> next offset to return
        self.assigned = asyncio.Event()

    async def on_partitions_revoked(self, revoked: object) -> None:
        """Nothing to do: the positions stay here until the assignment shows what stays."""

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        try:
            for tp in assigned:
                kept = self.positions.get(tp)
                if kept is not None:
                    committed = await self.consumer.committed(tp)
                    if committed is None or kept >= committed:
                        self.consumer.seek(tp, kept)
            self.positions = {tp: await self.consumer.position(tp) for tp in assigned}
        finally:
            self.assigned.set()


class KafkaConsumer:
    """A `Consumer` on Kafka. In a group, the broker assigns the partitions and stores the
    committed positions; without one, it reads every partition of its topics from the
    beginning (`earliest`) or the end (`latest`) and commits nothing."""

    def __init__(
        self,
        bus: KafkaBus,
        topics: Sequence[str],
        group: str | None,
        start: StartAt,
        positions: Mapping[tuple[str, int], int] | None = None,
    ) -> None:
        self.bus = bus
        self.topics = tuple(topics)
        self.group = group
        self.start_at = start
        self.begin_at = dict(positions or {})
        self._consumer: Any = None
        self._membership: _Membership | None = None
        self._start_lock = asyncio.Lock()
        self._closed = False

    async def start(self) -> None:
        """Connect and, in a group, return once this member holds its share of the
        partitions, with every position settled. `BusUnavailable` after 30 s."""
        if self._closed:
            raise BusError("the consumer is closed")
        if self._consumer is not None:
            return
        async with self._start_lock:
            if self._consumer is not None:
                return
            try:
                async with asyncio.timeout(_JOIN_TIMEOUT_S):
                    self._consumer = await self._open()
            except TimeoutError as exc:
                raise BusUnavailable(
                    f"no partitions from Kafka at {self.bus.bootstrap} "
                    f"within {_JOIN_TIMEOUT_S:g} s (group {self.group!r})"
                ) from exc
            except KafkaError as exc:
                raise _failure(exc, f"consuming from Kafka at {self.bus.bootstrap}") from exc
            self.bus._consumers.add(self)

    async def _open(self) -> Any:
        partition_counts = await self.bus.ensure_topics(self.topics)
        consumer = self.bus.aiokafka_consumer(self.group, self.start_at)
        try:
            if self.group is None:
                consumer.assign(
                    [TopicPartition(n, p) for n, c in partition_counts.items() for p in range(c)]
                )
                await consumer.start()
                for (topic, partition), offset in self.begin_at.items():
                    tp = TopicPartition(self.bus.broker_topic(topic), partition)
                    if tp in consumer.assignment():
                        consumer.seek(tp, offset)  # out of range (retention): reset by `start`
                for tp in consumer.assignment():
                    await consumer.position(tp)  # pins `latest` to the end as of now
            else:
                self._membership = _Membership(consumer)
                consumer.subscribe(list(partition_counts), listener=self._membership)
                await consumer.start()
                await self._membership.assigned.wait()
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def fetch(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Record]:
        """Up to `max_records` next records of the partitions this member holds now."""
        await self.start()
        try:
            batches = await self._consumer.getmany(
                timeout_ms=int(timeout_s * 1000), max_records=max_records
            )
        except KafkaError as exc:
            raise _failure(exc, "fetching from Kafka") from exc
        held = self._consumer.assignment()
        records = []
        for tp, messages in batches.items():
            if tp in held and messages:
                records += [self.bus._record(message) for message in messages]
                if self._membership is not None:
                    self._membership.positions[tp] = messages[-1].offset + 1
        return records

    async def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> None:
        """Store the positions after everything fetched, or the given next offsets of the
        partitions this member still holds (others are skipped: they were revoked, and
        their records go to another member). Waits while the broker is unreachable.
        `BusError` when a rebalance took the partitions first."""
        if self.group is None:
            raise BusError("a consumer without a group has nothing to commit")
        if self._closed:
            raise BusError("the consumer is closed")
        if self._consumer is None:
            return  # nothing fetched, nothing to store
        wanted = None
        if offsets is not None:
            held = self._consumer.assignment()
            wanted = {
                tp: next_offset
                for (topic, partition), next_offset in offsets.items()
                if (tp := TopicPartition(self.bus.broker_topic(topic), partition)) in held
            }
            if not wanted:
                return
        try:
            await self._consumer.commit(wanted)
        except CommitFailedError as exc:
            raise BusError(
                "commit refused: the group rebalanced, so these records will be delivered again"
            ) from exc
        except KafkaError as exc:
            raise _failure(exc, "committing to Kafka") from exc

    async def ends(
        self, partitions: Collection[tuple[str, int]] | None = None
    ) -> dict[tuple[str, int], int]:
        """The high watermarks of `partitions` (default: those this member holds now),
        asked of their leaders: an `acks=all` record is below it once acknowledged.
        `BusUnavailable` when the broker does not answer in time."""
        await self.start()
        if partitions is None:
            held = list(self._consumer.assignment())
        else:
            if any(topic not in self.topics for topic, _ in partitions):
                raise BusError(f"ends of partitions outside this consumer's topics {self.topics}")
            held = [TopicPartition(self.bus.broker_topic(t), p) for t, p in partitions]
        if not held:
            return {}
        try:
            ends: dict[Any, int] = await self._consumer.end_offsets(held)
        except KafkaTimeoutError as exc:
            raise BusUnavailable(f"Kafka at {self.bus.bootstrap} did not tell the ends") from exc
        except KafkaError as exc:
            raise _failure(exc, "asking Kafka for the partitions' ends") from exc
        return {(self.bus._logical(tp.topic), tp.partition): end for tp, end in ends.items()}

    async def positions(self) -> dict[tuple[str, int], int]:
        """The fetch positions of the partitions this member holds now (one taken away
        meanwhile is left out)."""
        await self.start()
        positions: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            try:
                position = await self._consumer.position(tp)
            except IllegalStateError:
                continue  # revoked by a rebalance since `assignment()`
            except KafkaError as exc:
                raise _failure(exc, "asking Kafka for the consumer's positions") from exc
            positions[(self.bus._logical(tp.topic), tp.partition)] = position
        return positions

    async def close(self) -> None:
        """Leave the group (its other members take over these partitions)."""
        if self._closed:
            return
        self._closed = True
        self.bus._consumers.discard(self)
        if self._consumer is not None:
            try:
                await self._consumer.stop()
            except asyncio.CancelledError:
                # aiokafka's stop can surface the cancellation of its own fetch task (seen
                # while the broker was down): that is not a cancellation of our caller.
                if _being_cancelled():
                    raise

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
