"""aiokafka plumbing shared by the simulators, the read-back monitor and the CLI: every
client's factory (one configuration for Tansu and Apache Kafka: acks, idempotence, sizes,
timeouts, TLS and SASL), reading topics whole, and producing a stage's emits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    for_code,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.transaction import InitProducerIdRequest
from aiokafka.structs import ConsumerRecord

from engine.runtime import kafka_compat
from engine.runtime.delivery import Headers, OutputLimits, SendFn, deliver_result
from engine.runtime.stages import Emit, SourceMessage, StageResult, utcnow
from engine.runtime.transactions import (
    EXACTLY_ONCE,
    PartitionProducers,
    TransactionalDelivery,
    consume_transactionally,
    exactly_once_settings,
)
from engine.settings import Settings
from engine.wire.codec import Codec, UndecodableEvent
from engine.wire.topics import Topic

kafka_compat.apply()

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """TLS and SASL for an aiokafka client (producer, consumer, admin), from ``settings``."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if settings.security_protocol.startswith("SASL_"):
        options.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                       sasl_plain_password=settings.sasl_password)
    return options


def connection_environment(settings: Settings) -> dict[str, str]:
    """The settings a child process needs to reach the same cluster the same way."""
    return {
        "CLAIMS_KAFKA_SECURITY_PROTOCOL": settings.security_protocol,
        "CLAIMS_KAFKA_SASL_MECHANISM": settings.sasl_mechanism,
        "CLAIMS_KAFKA_SASL_USERNAME": settings.sasl_username,
        "CLAIMS_KAFKA_SASL_PASSWORD": settings.sasl_password,
        "CLAIMS_KAFKA_SSL_CA": settings.ssl_cafile,
        "CLAIMS_KAFKA_SSL_CERT": settings.ssl_certfile,
        "CLAIMS_KAFKA_SSL_KEY": settings.ssl_keyfile,
    }


def ssl_context(settings: Settings) -> ssl.SSLContext:
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.ssl_cafile or None, certfile=settings.ssl_certfile or None,
        keyfile=settings.ssl_keyfile or None)
    return context


def make_admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                               request_timeout_ms=settings.request_timeout_ms, **client_options(settings))


def make_consumer(settings: Settings, **config: Any) -> AIOKafkaConsumer:
    """A consumer outside any group (reading topics whole, the read-back)."""
    defaults: dict[str, Any] = {"enable_auto_commit": False,
                                "max_partition_fetch_bytes": max(settings.max_request_bytes, 1 << 20),
                                "isolation_level": ("read_committed" if settings.processing_guarantee == EXACTLY_ONCE
                                                    else "read_uncommitted")}
    return AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                            **{**defaults, **client_options(settings), **config})


def make_producer(settings: Settings, bootstrap_servers: str, transactional_id: str | None = None) -> AIOKafkaProducer:
    """acks=all; idempotent when ``settings.idempotence`` is ``on`` (``resolve_idempotence``:
    Kafka yes, Tansu no). Either way every stage absorbs a redelivery (at-least-once);
    ``transactional_id`` for the exactly-once stages (``transactions``)."""
    return AIOKafkaProducer(
        transactional_id=transactional_id,
        bootstrap_servers=bootstrap_servers,
        acks="all",
        linger_ms=settings.producer_linger_ms,
        max_batch_size=settings.producer_max_batch_bytes,
        max_request_size=settings.max_request_bytes,
        request_timeout_ms=settings.request_timeout_ms,
        retry_backoff_ms=settings.retry_backoff_ms,
        enable_idempotence=settings.idempotence == "on",
        **client_options(settings),
    )


class _Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


Client = TypeVar("Client", bound=_Startable)


@contextlib.asynccontextmanager
async def started(client: Client) -> AsyncIterator[Client]:
    """``client`` started, and stopped however the block ends, also when its start fails:
    aiokafka leaves a client whose start raised (a refused password, no broker) open, and
    warns about it when it is collected."""
    try:
        await client.start()
        yield client
    finally:
        await client.stop()


def make_group_consumer(
    settings: Settings, bootstrap_servers: str, group_id: str, *topics: str, isolation_level: str = "read_uncommitted"
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        isolation_level=isolation_level,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000),
        max_poll_records=settings.batch_max,
        max_partition_fetch_bytes=max(settings.max_request_bytes, 1 << 20),
        request_timeout_ms=max(settings.request_timeout_ms, int(settings.session_timeout_s * 1000) + 1000),
        retry_backoff_ms=settings.retry_backoff_ms,
        **client_options(settings),
    )


def encode_emit(settings: Settings, codec: Codec, emit: Emit) -> tuple[str, bytes, bytes]:
    """(real topic name, key bytes, framed Avro value) of a stage's emit; an event that is
    already framed bytes (a record passed on unchanged) goes as it is."""
    value = emit.event if isinstance(emit.event, bytes) else codec.encode(emit.event)
    return settings.topic(emit.topic), emit.key.encode(), value


async def produce_emits(send: SendFn, settings: Settings, codec: Codec, emits: Iterable[Emit]) -> None:
    """Send every emit and wait until the broker has them all: for producers that are not
    a stage (timers, file ingest); a stage's batch goes through ``deliver_result``."""
    futures: list[Awaitable[object]] = []
    for emit in emits:
        futures.append(await send(*encode_emit(settings, codec, emit), ()))
    if futures:
        await asyncio.gather(*futures)


def aiokafka_send(producer: AIOKafkaProducer) -> SendFn:
    async def send(topic: str, key: bytes, value: bytes, headers: Headers) -> Awaitable[object]:
        delivery: Awaitable[object] = await producer.send(topic, value=value, key=key, headers=list(headers) or None)
        return delivery

    return send


def source_message(record: ConsumerRecord[bytes, bytes]) -> SourceMessage:
    headers = tuple((k, bytes(v)) for k, v in (record.headers or ()) if v is not None)
    return SourceMessage(record.topic, record.partition, record.offset, record.key, record.value, headers)


async def consume_batches(
    consumer: AIOKafkaConsumer,
    handle: Callable[[Sequence[SourceMessage]], Awaitable[None]],
    stop: asyncio.Event,
    timeout_ms: int = 200,
) -> None:
    """getmany → handle → commit, until ``stop`` is set. At-least-once: the commit
    happens only after ``handle`` returned (its output acknowledged by the broker)."""
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=timeout_ms)
        if not batches:
            continue
        messages = [source_message(r) for records in batches.values() for r in records]
        await handle(messages)
        await commit_handled(consumer, {tp: records[-1].offset + 1 for tp, records in batches.items()})


async def commit_handled(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    """Commit a handled batch's offsets for the partitions this member still owns.

    A rebalance while the batch was handled (a member joined, or this one stalled past
    its session) moves partitions away: their offsets are not committed and the new owner
    reads those records again (every stage recognises a redelivered event by its id),
    rather than the loop dying on the refused commit.
    """
    owned = consumer.assignment()
    kept = {tp: offset for tp, offset in offsets.items() if tp in owned}
    try:
        if kept:
            await consumer.commit(kept)
    except (CommitFailedError, IllegalStateError) as refused:
        kept = {}
        log.warning("group rebalanced during a batch: its commit was refused (%s)", type(refused).__name__)
    if len(kept) < len(offsets):
        log.info("left %d partition(s) of a handled batch uncommitted for their new owner", len(offsets) - len(kept))


async def assign_all(consumer: AIOKafkaConsumer, topics: Sequence[str], wait_s: float = 30.0) -> list[TopicPartition]:
    """Assign every partition of ``topics`` (no group) and seek to the beginning.

    The partitions come from a fresh all-topics Metadata request: a consumer without a
    subscription knows no topic on Kafka (its bootstrap asks for none; Tansu answers every
    topic to that), and ``consumer.topics()`` does not keep what it fetched. A topic the
    answering broker does not list yet is asked for again, up to ``wait_s``: on a cluster
    a topic just created reaches each broker's metadata a moment apart, and a reader that
    took the first answer would read nothing of it, ever.
    """
    deadline = time.monotonic() + wait_s
    while True:
        cluster = await consumer._client.fetch_all_metadata()
        missing = [topic for topic in topics if not cluster.partitions_for_topic(topic)]
        if not missing:
            break
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{len(missing)} topic(s) not in the broker's metadata after {wait_s:.0f} s "
                               f"(e.g. {missing[0]}): not created yet?")
        await asyncio.sleep(0.2)
    partitions = [TopicPartition(topic, p) for topic in topics for p in sorted(cluster.partitions_for_topic(topic))]
    consumer.assign(partitions)
    if partitions:  # seek_to_beginning() without partitions means "all assigned"
        await consumer.seek_to_beginning(*partitions)
    return partitions


async def read_to_highwater(
    consumer: AIOKafkaConsumer,
    partitions: Sequence[TopicPartition],
    timeout_s: float,
    on_records: Callable[[list[ConsumerRecord[bytes, bytes]]], None] = lambda records: None,
) -> None:
    """Consume until every partition's position reaches its fetch high watermark.

    Not ListOffsets: Tansu answers it wrongly for the latest offset (BROKER.md); the
    high watermark comes with every fetch and is right on Tansu and Kafka alike.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=100, max_records=10_000)).values():
            on_records(records)
        if all([await _caught_up(consumer, tp) for tp in partitions]):
            return
    raise TimeoutError(f"not read to the high watermark of {len(partitions)} partitions in {timeout_s}s")


async def read_topic(settings: Settings, topic: str, timeout_s: float = 30.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` now, without a consumer group: read to each partition's
    fetch high watermark, bounded by ``timeout_s`` (on ``settings.bootstrap_servers``)."""
    async with started(make_consumer(settings)) as consumer:
        partitions = await assign_all(consumer, [topic], wait_s=timeout_s)
        records: list[ConsumerRecord[bytes, bytes]] = []
        await read_to_highwater(consumer, partitions, timeout_s, records.extend)
        return records


async def _caught_up(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
    highwater = consumer.highwater(tp)
    return highwater is not None and await consumer.position(tp) >= highwater


async def run_consumer_stage(
    settings: Settings,
    bootstrap_servers: str,
    codec: Codec,
    group_id: str,
    source: Topic,
    stage: str,
    process: Callable[[Sequence[SourceMessage]], StageResult],
    stop: asyncio.Event,
) -> None:
    """An aiokafka stage outside faust (the simulators): consume ``source`` in a group,
    deliver what ``process`` emits, commit after the acks, until ``stop``; with
    ``exactly_once``, outputs and offsets in one transaction per input partition."""
    limits = OutputLimits.of(settings)
    if settings.processing_guarantee == EXACTLY_ONCE:
        eos = exactly_once_settings(settings)
        producers = PartitionProducers(lambda tid: make_producer(eos, bootstrap_servers, tid), group_id)
        delivery = TransactionalDelivery(producers, stage, codec, limits, settings.topic, utcnow)
        consumer = make_group_consumer(eos, bootstrap_servers, group_id, isolation_level="read_committed")
        consumer.subscribe([settings.topic(source)], listener=producers)
        try:
            async with started(consumer):
                await consume_transactionally(consumer, delivery, process, stop)
        finally:
            await producers.close()
        return
    consumer = make_group_consumer(settings, bootstrap_servers, group_id, settings.topic(source))
    async with started(make_producer(settings, bootstrap_servers)) as producer, started(consumer):
        send = aiokafka_send(producer)

        async def handle(messages: Sequence[SourceMessage]) -> None:
            await deliver_result(send, stage, process(messages), codec, limits, settings.topic, utcnow,
                                 lambda: producer)

        await consume_batches(consumer, handle, stop)


T = TypeVar("T")


async def read_events(settings: Settings, bootstrap_servers: str, codec: Codec, topic: Topic,
                      event_type: type[T]) -> list[T]:
    """Every event of ``event_type`` on the logical ``topic`` now (``read_topic``), decoded; a
    record that does not decode is skipped: the stage that met it dead-lettered it."""
    decoded = []
    for record in await read_topic(settings.with_bootstrap(bootstrap_servers), settings.topic(topic)):
        try:
            decoded.append(codec.decode(record.value, event_type))
        except UndecodableEvent:
            continue
    return decoded


async def broker_supports_idempotence(settings: Settings) -> bool:
    """Whether the broker hands aiokafka a producer id (InitProducerId v0, as aiokafka's
    idempotent producer asks): Kafka does; Tansu answers UNKNOWN_SERVER_ERROR (BROKER.md)."""
    client = AIOKafkaClient(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000,
                            **client_options(settings))
    try:
        await client.bootstrap()
        for _ in range(50):  # a fresh Kafka answers COORDINATOR_LOAD_IN_PROGRESS for a while
            response = await client.send(client.get_random_node(), InitProducerIdRequest(None, 60_000))
            code = int(response.error_code)
            if code == 0 or not for_code(code).retriable:
                return code == 0
            await asyncio.sleep(0.2)
        return False
    except KafkaError:
        return False
    finally:
        await client.close()


async def resolve_idempotence(settings: Settings, bootstrap_servers: str) -> Settings:
    """``CLAIMS_IDEMPOTENCE=auto`` made ``on`` or ``off`` for this broker, once per process
    (the children of ``claims run`` inherit the answer)."""
    if settings.idempotence != "auto":
        return settings
    supported = await broker_supports_idempotence(settings.with_bootstrap(bootstrap_servers))
    log.info("broker at %s %s idempotent producers", bootstrap_servers, "supports" if supported else "refuses")
    return replace(settings, idempotence="on" if supported else "off")


class ClusterRefused(RuntimeError):
    """The cluster refused this client's TLS handshake or SASL credentials (one line)."""


async def check_connection(settings: Settings) -> None:
    """Connect once the way every client will, so a wrong password or CA is one clear line
    (``ClusterRefused``) instead of every client's retries in the log. Unreachable brokers
    are left to the clients, which wait for them."""
    if settings.security_protocol == "PLAINTEXT":
        return
    host, _, port = settings.bootstrap_servers.split(",")[0].strip().rpartition(":")
    options = client_options(settings)
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=settings.request_timeout_ms, **options)
    except (ssl.SSLError, SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
        who = (f"user {settings.sasl_username!r} ({settings.sasl_mechanism})"
               if settings.security_protocol.startswith("SASL_") else "this client")
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterRefused(f"Kafka at {host}:{port} refused {who} over {settings.security_protocol}: "
                             f"{reason}") from None
    except (TimeoutError, OSError, KafkaError):
        return
    conn.close()
