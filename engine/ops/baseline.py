"""The baseline every speed figure is a ratio of: one raw aiokafka consume → transform →
produce hop on the same broker, measured in the same run (machines are noisy; ratios hold).

No faust, no stage logic: a consumer reads batches with ``getmany``, each partition's
records go out as one ``create_batch``/``send_batch`` to the same partition of a
destination topic, the acks are awaited, then the batch is committed. The values are real
ClaimSubmitted events (the coding → claim code path on EHR-simulator encounters, lines
repeated until the framed event is >= 600 bytes). ``bench/raw_hop.py`` prints it alone;
``claims load`` measures it before its load.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.claims.build import ClaimContext, build_claim
from engine.coding.rules import CodingReference, code_encounter
from engine.model.events import ClaimSubmitted, CodedEncounter, Encounter
from engine.settings import Settings
from engine.wire.codec import Codec
from simulators.ehr import Kind, plan_encounters
from simulators.payer.adjudication import PayerBook

PARTITIONS = 8
TARGET_VALUE_BYTES = 600
POOL = 64  # distinct claim values, cycled over the N messages
SESSION_TIMEOUT_MS = 10_000
LINGER_MS = 5
MAX_BATCH_BYTES = 1024 * 1024


def claim_values(settings: Settings, codec: Codec) -> list[bytes]:
    """POOL framed ClaimSubmitted events of >= TARGET_VALUE_BYTES from the real code path."""
    book = PayerBook.load(settings.payer_profiles_file)
    claim_ctx = ClaimContext.load(settings, codec)
    coding_ref = CodingReference.load(settings)
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    planned = plan_encounters(POOL * 2, 1, 0.0, 0.0, codec, book, today=date(2026, 11, 25))
    values: list[bytes] = []
    for _offset, record in enumerate(planned):
        if record.kind != Kind.GOOD or len(values) == POOL:
            continue
        encounter = codec.decode(record.value, Encounter)
        emit = code_encounter(encounter, record.value, coding_ref, now)[0]
        if not isinstance(emit.event, CodedEncounter):
            continue
        values.append(codec.encode(_grow(build_claim(emit.event, claim_ctx, now), codec)))
    if len(values) < POOL:
        raise SystemExit(f"only {len(values)} claims from {len(planned)} planned encounters")
    return values


def _grow(claim: ClaimSubmitted, codec: Codec) -> ClaimSubmitted:
    """Repeat the claim's lines (new line numbers) until the framed event is big enough."""
    original = list(claim.lines)
    while len(codec.encode(claim)) < TARGET_VALUE_BYTES:
        extra = replace(original[len(claim.lines) % len(original)], line_number=len(claim.lines) + 1)
        lines = [*claim.lines, extra]
        claim = replace(claim, lines=lines, total_charge=sum((line.charge for line in lines), Decimal("0.00")))
    return claim


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        await admin.close()


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=LINGER_MS,
        max_batch_size=MAX_BATCH_BYTES,
        max_request_size=2 * MAX_BATCH_BYTES,
        enable_idempotence=False,
    )


class HighWater:
    """End offsets of a topic, from the fetch high watermark (Tansu's ListOffsets(latest)
    is wrong, BROKER.md). Each poll is a fresh assignment: a fresh fetch from ``base``."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.base = {tp: 0 for tp in self.tps}  # last end offsets seen: fetch from there
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
            max_partition_fetch_bytes=1024,  # the broker still returns one whole batch
            request_timeout_ms=10_000,
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def wait_total(self, total: int) -> dict[TopicPartition, int]:
        """Poll until the end offsets sum to ``total`` (or more); callers bound the wait."""
        while True:
            self.consumer.assign(self.tps)
            for tp in self.tps:
                self.consumer.seek(tp, self.base[tp])
            ends: dict[TopicPartition, int] = {}
            while len(ends) < len(self.tps):
                await self.consumer.getmany(timeout_ms=20, max_records=1)
                ends = {tp: hw for tp in self.tps if (hw := self.consumer.highwater(tp)) is not None}
            self.consumer.unsubscribe()
            self.base = ends
            if sum(ends.values()) >= total:
                return ends


async def produce_source(bootstrap: str, topic: str, values: list[bytes], n: int) -> float:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        started = time.perf_counter()
        pending = []
        for i in range(n):
            pending.append(await producer.send(topic, value=values[i % len(values)], key=b"%08d" % i))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def hop(
    bootstrap: str, source: str, destination: HighWater, n: int, group: str, transform: Callable[[bytes], bytes]
) -> tuple[float, int]:
    """(seconds, getmany batches) for one hop of all n source messages."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        request_timeout_ms=30_000,
    )
    producer = make_producer(bootstrap)
    await producer.start()
    await consumer.start()
    try:
        tps = [TopicPartition(source, p) for p in range(PARTITIONS)]
        consumer.assign(tps)  # manual assignment: no group join (Tansu: ~5 s), commits still go to `group`
        await consumer.seek_to_beginning(*tps)
        target = sum(destination.base.values()) + n
        dst = destination.topic
        started = time.perf_counter()
        consumed = batches = 0
        while consumed < n:
            fetched = await consumer.getmany(timeout_ms=1000)
            if not fetched:
                continue
            acks = []
            for tp, records in fetched.items():
                batch = producer.create_batch()
                for record in records:
                    value = transform(record.value)
                    if batch.append(key=record.key, value=value, timestamp=None) is None:  # full
                        batch.close()
                        acks.append(await producer.send_batch(batch, dst, partition=tp.partition))
                        batch = producer.create_batch()
                        batch.append(key=record.key, value=value, timestamp=None)
                batch.close()
                acks.append(await producer.send_batch(batch, dst, partition=tp.partition))
                consumed += len(records)
            await asyncio.gather(*acks)
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
            batches += 1
        await destination.wait_total(target)
        return time.perf_counter() - started, batches
    finally:
        await consumer.stop()
        await producer.stop()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


@dataclass
class HopTopics:
    """A filled source topic and an empty destination of one hop measurement."""

    source: str
    source_ends: HighWater
    destination: HighWater
    produce_s: float  # how long filling the source took


@contextlib.asynccontextmanager
async def hop_topics(bootstrap: str, prefix: str, values: list[bytes], n: int) -> AsyncIterator[HopTopics]:
    """Topics of their own (``prefix`` and a run id), the source filled with ``n`` of
    ``values``; deleted after. Bounded so only a hang trips it (2 cores: ~10k msg/s at worst)."""
    run_id = uuid.uuid4().hex[:8]
    source, dest = f"{prefix}.{run_id}.source", f"{prefix}.{run_id}.destination"
    async with asyncio.timeout(30):
        await create_topics(bootstrap, [source, dest])
    src_hw, dst_hw = HighWater(bootstrap, source), HighWater(bootstrap, dest)
    await src_hw.start()
    await dst_hw.start()
    try:
        async with asyncio.timeout(30 + n / 2_000):
            seconds = await produce_source(bootstrap, source, values, n)
            ends = await src_hw.wait_total(n)
        if sum(ends.values()) != n:
            raise RuntimeError(f"the source holds {sum(ends.values())} messages, expected {n}")
        yield HopTopics(source, src_hw, dst_hw, seconds)
    finally:
        await src_hw.stop()
        await dst_hw.stop()
        with contextlib.suppress(Exception):  # a broker without topic deletion keeps them: harmless
            await delete_topics(bootstrap, [source, dest])


async def raw_hop_rate(bootstrap: str, settings: Settings, codec: Codec, n: int = 50_000) -> float:
    """Messages per second of the bytes-passthrough hop of ``n`` messages on ``bootstrap``."""
    async with hop_topics(bootstrap, "baseline.raw-hop", claim_values(settings, codec), n) as topics:
        async with asyncio.timeout(30 + n / 1_000):
            seconds, _ = await hop(bootstrap, topics.source, topics.destination, n,
                                   f"baseline-raw-hop-{uuid.uuid4().hex[:8]}", lambda value: value)
    return n / seconds
