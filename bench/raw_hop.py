"""The baseline ceiling: one raw consume → transform → produce hop on aiokafka.

No faust, no stage logic: what a single Python process can move through one hop on this
broker, against which the worker's figures are judged.

1. Start the embedded Tansu broker (or use ``CLAIMS_KAFKA_BOOTSTRAP``), create a source
   and a destination topic, 8 partitions each (unique names per run).
2. Produce N ~600-byte messages to the source with ``AIOKafkaProducer.send()`` (acks=all,
   linger 5 ms, 1 MB batches, no idempotence — Tansu cannot do idempotence, BROKER.md).
   The values are real ClaimSubmitted events (built by the coding → claim code path from
   EHR-simulator encounters, lines repeated until the framed event is >= 600 bytes).
3. For each variant, time the hop: an ``AIOKafkaConsumer`` (manually assigned to every
   source partition, its own group id for commits) reads batches with ``getmany``,
   transforms each value, writes one ``create_batch``/``send_batch`` per partition to the
   same partition of the destination, waits for the acks, then commits the ``getmany``.
   Variants:
     * ``bytes passthrough`` — the value as is;
     * ``Avro decode+encode`` — ``Codec.decode(value, ClaimSubmitted)`` then
       ``Codec.encode`` (framing and dataclass conversion included).
   The clock stops when the destination's high watermarks (read with
   ``consumer.highwater()``; Tansu's ListOffsets(latest) is wrong) account for all N
   messages of the variant.

Everything is bounded by timeouts; the run stops by itself.

    python bench/raw_hop.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from engine.claims.build import ClaimContext, build_claim
from engine.coding.rules import CodingReference, code_encounter
from engine.model.events import ClaimSubmitted, CodedEncounter, Encounter
from engine.runtime.broker import EmbeddedBroker
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


# --- the messages ------------------------------------------------------------------


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


# --- broker plumbing -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def broker() -> AsyncIterator[tuple[str, str]]:
    external = os.environ.get("CLAIMS_KAFKA_BOOTSTRAP", "")
    if external:
        yield external, "external (CLAIMS_KAFKA_BOOTSTRAP)"
        return
    async with EmbeddedBroker() as embedded:
        yield embedded.bootstrap_servers, "embedded Tansu (memory)"


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


# --- the phases ----------------------------------------------------------------------


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


async def run(n: int) -> int:
    settings = Settings()
    codec = Codec.from_dir(settings.schemas_dir)
    values = claim_values(settings, codec)
    sizes = sorted(len(v) for v in values)

    def passthrough(value: bytes) -> bytes:
        return value

    def avro(value: bytes) -> bytes:
        return codec.encode(codec.decode(value, ClaimSubmitted))

    variants: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("bytes passthrough", passthrough),
        ("Avro decode+encode (Codec, ClaimSubmitted)", avro),
    ]
    run_id = uuid.uuid4().hex[:8]
    source, dest = f"bench.raw-hop.{run_id}.source", f"bench.raw-hop.{run_id}.destination"
    # Generous bounds (2 cores: ~10k msg/s at worst) so only a hang trips them.
    produce_timeout = 30 + n / 2_000
    hop_timeout = 30 + n / 1_000

    wall = time.perf_counter()
    async with broker() as (bootstrap, kind):
        print(f"broker: {kind} at {bootstrap}; {n} messages, {PARTITIONS} partitions, "
              f"values {sizes[0]}–{sizes[-1]} B (framed ClaimSubmitted)")
        async with asyncio.timeout(30):
            await create_topics(bootstrap, [source, dest])
        src_hw, dst_hw = HighWater(bootstrap, source), HighWater(bootstrap, dest)
        await src_hw.start()
        await dst_hw.start()
        try:
            async with asyncio.timeout(produce_timeout):
                seconds = await produce_source(bootstrap, source, values, n)
                ends = await src_hw.wait_total(n)
            if sum(ends.values()) != n:
                raise SystemExit(f"source holds {sum(ends.values())} messages, expected {n}")
            print(f"{'produce (send() per message)':<44} {n / seconds:>9,.0f} msg/s  ({seconds:.2f} s)")
            for index, (name, transform) in enumerate(variants):
                async with asyncio.timeout(hop_timeout):
                    seconds, batches = await hop(bootstrap, source, dst_hw, n, f"bench-raw-hop-{run_id}-{index}",
                                                 transform)
                print(f"{'hop: ' + name:<44} {n / seconds:>9,.0f} msg/s  ({seconds:.2f} s, "
                      f"{batches} getmany, {n / batches:,.0f} msg each)")
            if sum(dst_hw.base.values()) != n * len(variants):
                raise SystemExit(f"destination holds {sum(dst_hw.base.values())}, expected {n * len(variants)}")
        finally:
            await src_hw.stop()
            await dst_hw.stop()
    print(f"({time.perf_counter() - wall:.1f} s wall, broker included)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages per hop (default 100000)")
    args = parser.parse_args()
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    return asyncio.run(run(args.messages))


if __name__ == "__main__":
    sys.exit(main())
