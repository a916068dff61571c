"""What every faust app of Claimflow shares (the engine's worker, the payer simulator):
the tuned app settings, raw-bytes topics, batch agents that hand a stage function its
messages, and faust's producer as a ``SendFn``.

Per BROKER.md, faust's per-message machinery costs ~300–500 µs of CPU an event, so
every agent takes batches (``take_events``), keeps values as raw bytes (our own Avro
codec, not faust's serializers), produces through faust's producer without awaiting
each send (its tables' changelog records through a ``ChangelogOutbox``, in batches), and
waits for the broker's acks once per batch before the batch's offsets are acknowledged:
at-least-once, and every stage is idempotent downstream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import faust
from faust.exceptions import NotReady
from faust.types import EventT

from engine.runtime.changelog_outbox import ChangelogOutbox, ChangelogRecord
from engine.runtime.changelog_tables import key_partition
from engine.runtime.cluster_watch import BrokerReset, ClusterWatch, declared_topics, stop_on_reset
from engine.runtime.delivery import Headers, OutputLimits, SendFn, deliver_result
from engine.runtime.faust_transport import BROKER_SCHEME
from engine.runtime.faust_transport import register as register_transport
from engine.runtime.kafka import ssl_context
from engine.runtime.staged_state import StateJournal
from engine.runtime.stages import SourceMessage, Stage, StageResult, run_group, stage_groups, utcnow
from engine.runtime.transactions import EXACTLY_ONCE
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic

C = TypeVar("C")

#: Partitions of every table's changelog: the topics they follow have 8 (topics.yaml).
TABLE_PARTITIONS = 8


def make_faust_app(settings: Settings, app_id: str, bootstrap_servers: str) -> faust.App:
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    register_transport()
    app = faust.App(
        app_id,
        broker=f"{BROKER_SCHEME}://{bootstrap_servers}",  # faust's aiokafka transport, a fetch handed over at once
        store="memory://",
        datadir=str(settings.state_dir / "faust" / app_id),  # not the working directory
        topic_partitions=TABLE_PARTITIONS,
        topic_allow_declare=False,  # `claims topics apply` owns topic creation
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_rebalance_timeout=settings.session_timeout_s,
        broker_commit_every=settings.batch_max,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=settings.producer_max_batch_bytes,
        producer_acks=-1,
        producer_max_request_size=settings.max_request_bytes,
        consumer_max_fetch_size=max(settings.max_request_bytes, 1 << 20),
        # On a rebalance the worker finishes the batch it is on (outputs, changelog
        # records, commit) before it gives up its partitions: else the next owner read
        # the changelog without the batch's writes and decided the same records again.
        stream_wait_empty=True,
        stream_buffer_maxsize=settings.batch_max * 4,
        broker_credentials=faust_credentials(settings),
        broker_request_timeout=max(settings.request_timeout_ms / 1000, settings.session_timeout_s + 1),
        web_enabled=False,
        table_standby_replicas=0,
    )

    app.claimflow_outbox = _make_outbox(app)  # type: ignore[attr-defined]
    # kafka_compat: its consumer reads committed records only, as every reader in that mode.
    app.claimflow_read_committed = settings.processing_guarantee == EXACTLY_ONCE  # type: ignore[attr-defined]
    if settings.idempotence == "on":
        _idempotent_producer(app)
    _watch_cluster(app, settings.with_bootstrap(bootstrap_servers), app_id)

    @app.on_after_configured.connect
    def _quiet(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:  # pragma: no cover - faust signal
        logging.getLogger().setLevel(settings.log_level)

    return app


def _watch_cluster(app: faust.App, settings: Settings, app_id: str) -> None:
    """A timer that ends the worker when its broker came back empty (``cluster_watch``)."""
    watch = ClusterWatch(settings, declared_topics(settings))

    @app.timer(settings.cluster_check_s)  # type: ignore[untyped-decorator]
    async def cluster_watch() -> None:  # pragma: no cover - faust timer; the integration test sees it act
        try:
            await watch.check()
        except BrokerReset as reset:
            stop_on_reset(reset, f"faust app {app_id}")


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The same TLS and SASL as the aiokafka clients (``client_options``), as faust takes them."""
    if settings.security_protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if settings.security_protocol.endswith("SSL") else None
    if settings.security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=settings.sasl_username, password=settings.sasl_password,
                                     ssl_context=context, mechanism=settings.sasl_mechanism)
    return faust.SSLCredentials(context)


def _idempotent_producer(app: faust.App) -> None:
    """faust asks aiokafka for idempotence only in its transaction mode; our producer is
    idempotent whenever the broker supports it (``Settings.idempotence``)."""
    producer = typing.cast(Any, app.producer)
    extra = producer._settings_extra
    producer._settings_extra = lambda: {**extra(), "enable_idempotence": True}


class StringTable(faust.Table[str, str]):
    """A faust table of str → str whose changelog records carry the key and value as their
    UTF-8 bytes (faust's default is JSON, so ``"E1"`` went out as ``b'"E1"'``).

    With the raw key, the producer's partitioner puts an entry in the same partition as
    the records keyed the same way on the topic its stage reads, and faust assigns
    changelog partition N with source partition N: state follows its partition when
    workers join and leave.
    """

    def _serializer_from_type(self, typ: Any) -> Any:
        return "raw" if typ is str else super()._serializer_from_type(typ)

    def send_changelog(self, partition: int | None, key: Any, value: Any, key_serializer: Any = None,
                       value_serializer: Any = None) -> Any:
        """The entry's record goes to the app's ``ChangelogOutbox`` (in write order, sent in
        batches), not to faust's per-record producer buffer."""
        raw_key = str(key).encode()
        if partition is None:
            partition = key_partition(str(key), self.partitions or TABLE_PARTITIONS)
        outbox(self.app).put(ChangelogRecord(self.changelog_topic.get_topic_name(), partition, raw_key,
                                             None if value is None else str(value).encode()))
        return _Written(_WrittenTo(partition))


@dataclasses.dataclass(frozen=True, slots=True)
class _WrittenTo:
    partition: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Written:
    """What faust's table reads of a changelog send: the partition the entry went to."""

    message: _WrittenTo


#: Splits a grouped table's key into its group and the entry within it.
ENTRY_SEPARATOR = "#"


class GroupedStringTable(StringTable):
    """A ``StringTable`` whose entries ``GROUP#…`` sit in the changelog partition of ``GROUP``
    (the producers' partitioner, murmur2), beside the records keyed ``GROUP`` on the topic
    its stage reads: a payer member's claims, each its own entry, in the member's partition."""

    def partition_for_key(self, key: Any) -> int | None:
        return key_partition(str(key).split(ENTRY_SEPARATOR, 1)[0], self.partitions or TABLE_PARTITIONS)


def outbox(app: Any) -> ChangelogOutbox:
    """The app's ``ChangelogOutbox``, made with the app (``make_faust_app``)."""
    return typing.cast(ChangelogOutbox, app.claimflow_outbox)


def aiokafka_producer(app: faust.App) -> Any:
    """The aiokafka producer under faust's (ours is not in faust's transaction mode)."""
    return typing.cast(Any, app.producer)._ensure_producer()


def _make_outbox(app: faust.App) -> ChangelogOutbox:
    def failed(exc: BaseException) -> None:
        if not isinstance(exc, NotReady):  # NotReady: the producer stopped, the app is stopping
            asyncio.ensure_future(app.crash(exc))

    return ChangelogOutbox(functools.partial(aiokafka_producer, app), failed)


async def apply_and_acknowledge(app: faust.App, journal: StateJournal,
                                delivered: Callable[[SourceMessage], bool]) -> None:
    """Apply a batch's table writes and wait until the broker holds their changelog records
    (and every record written before them: the payer writes its table as it decides).

    faust flushes its producer before it commits, but a record its buffer had handed on
    and aiokafka had not yet taken in was in neither, and the commit went ahead of it: a
    kill then lost a dedupe entry whose offset was committed, and a copy of the coded event
    read later was billed again.
    """
    journal.apply(delivered)
    await outbox(app).flush()


def string_table(app: faust.App, name: str, table_type: type[StringTable] = StringTable) -> Any:
    """A ``StringTable`` (or ``table_type``) on ``app``, partitioned by its key as our
    producers partition the topics keyed the same way (so a timer may write it outside a
    stream, too)."""
    table = table_type(app, name=name, default=None, beacon=app.tables.beacon, key_type=str, value_type=str,
                       partitions=TABLE_PARTITIONS, use_partitioner=True)
    return app.tables.add(table)


def raw_topic(app: faust.App, settings: Settings, *logical: Topic) -> Any:
    return app.topic(*(settings.topic(name) for name in logical), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw", allow_empty=True)


def add_batch_agent(app: faust.App, settings: Settings, codec: Codec, name: str, sources: Sequence[Topic],
                    stage: Callable[[Sequence[SourceMessage]], StageResult]) -> None:
    """An agent on ``sources`` that hands each batch to ``stage`` and delivers its outputs;
    the batch is acknowledged (its offsets may be committed) only once they are delivered,
    and the stage's table writes are applied only for the messages whose outputs were."""
    send = faust_send(app)
    limits = OutputLimits.of(settings)

    async def process(stream: faust.StreamT[bytes]) -> None:
        batches = typing.cast(faust.Stream[bytes], stream)
        gate = AckGate(batches)
        async for events in batches.take_events(settings.batch_max, within=settings.batch_within_s):
            gate.hold()
            with StateJournal.opened() as journal:
                result = stage(source_messages(events))
                delivered = await deliver_result(send, name, result, codec, limits, settings.topic, utcnow,
                                                 functools.partial(aiokafka_producer, app))
                await apply_and_acknowledge(app, journal, delivered)
            gate.release()

    process.__name__ = f"{name.replace('-', '_')}_agent"
    app.agent(raw_topic(app, settings, *sources), name=f"{app.conf.id}.{process.__name__}")(process)


class AckGate:
    """Acks of a stream's batch only after its outputs were delivered.

    faust's ``take_events`` acks every event of a batch in a ``finally``: also when the
    agent's body raised or was cancelled (a shutdown mid-produce), so offsets were
    committed for records whose outputs never reached the broker. Held, the gate drops
    those acks: the records stay uncommitted and are read again after the restart.
    """

    def __init__(self, stream: faust.Stream[bytes]) -> None:
        self._ack = stream.ack
        self._open = True
        stream.ack = self.ack  # type: ignore[method-assign]

    def hold(self) -> None:
        self._open = False

    def release(self) -> None:
        self._open = True

    async def ack(self, event: EventT[bytes]) -> bool:
        return await self._ack(event) if self._open else False


def add_stages(app: faust.App, settings: Settings, codec: Codec, stages: Sequence[Stage[C]], context: C) -> None:
    """A batch agent per group of stages that share state (``stage_groups``), each handed
    ``context``."""
    for group in stage_groups(stages):
        add_batch_agent(app, settings, codec, group[0].name, [stage.source for stage in group],
                        functools.partial(run_group, group, context, codec, topic_name=settings.topic))


def source_messages(events: Sequence[EventT[bytes]]) -> list[SourceMessage]:
    return [
        SourceMessage(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value,
                      _headers(e.message.headers))
        for e in events
    ]


def _headers(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """faust hands a record's headers as a list of pairs or as a mapping."""
    if not headers:
        return ()
    pairs = headers.items() if hasattr(headers, "items") else headers
    return tuple((str(k), bytes(v)) for k, v in pairs if v is not None)


def faust_send(app: faust.App) -> SendFn:
    async def send(topic: str, key: bytes, value: bytes, headers: Headers) -> Awaitable[object]:
        return await app.producer.send(topic=topic, key=key, value=value, partition=None, timestamp=None,
                                       headers=list(headers) or None)

    return send


def make_worker(app: faust.App, settings: Settings) -> Any:
    """faust's ``Worker`` for ``app``, without its start-up spinner: the spinner set the
    root logger to DEBUG and handled every record, so each debug line of aiokafka and faust
    (one per record produced) was built and handled whatever the configured level."""
    from faust.worker import Worker

    worker = Worker(app, loglevel=settings.log_level.lower().replace("warning", "warn"), quiet=True)
    worker.spinner = None
    return worker


def run_app(app: faust.App, settings: Settings) -> None:
    """Run ``app``'s agents in this process until SIGTERM/SIGINT."""
    worker = make_worker(app, settings)
    logging.getLogger().setLevel(settings.log_level)
    worker.execute_from_commandline()
