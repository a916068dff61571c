"""What exactly-once costs on Apache Kafka, in one run on one broker.

Starts a one-node Apache Kafka on loopback (or uses ``CLAIMS_KAFKA_BOOTSTRAP``), fills a
source topic with N framed ClaimSubmitted events (bench/raw_hop.py), then moves them one
hop three ways and prints messages/s and each as a ratio of the first:

1. the raw aiokafka hop (``raw_hop.hop``, bytes passthrough): the baseline;
2. ``run_consumer_stage`` at least once: a consumer group, ``deliver_result`` (acks awaited,
   dead letters for what does not fit), a commit per ``getmany``;
3. ``run_consumer_stage`` exactly once: one transaction per input partition and batch,
   offsets sent in it (``engine/runtime/transactions.py``); the clock stops when a
   ``read_committed`` reader sees all N.

The stage is the same passthrough both times, so the difference is the guarantee's.

    python bench/exactly_once.py [--messages 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import raw_hop  # noqa: E402
from aiokafka import TopicPartition  # noqa: E402

from engine.runtime.kafka import make_consumer, run_consumer_stage, started  # noqa: E402
from engine.runtime.kafka_cluster import KafkaCluster  # noqa: E402
from engine.runtime.stages import Emit, SourceMessage, StageResult  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.wire.codec import Codec  # noqa: E402
from engine.wire.topics import Topic, apply_topics, load_topics  # noqa: E402


@contextlib.asynccontextmanager
async def kafka() -> AsyncIterator[str]:
    external = os.environ.get("CLAIMS_KAFKA_BOOTSTRAP", "")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory() as tmp:
        cluster = KafkaCluster(Path(tmp), nodes=1, lib_root=Settings().kafka_lib_dir)
        await cluster.start()
        try:
            yield cluster.bootstrap_servers
        finally:
            await asyncio.to_thread(cluster.stop)


def passthrough(messages: Sequence[SourceMessage]) -> StageResult:
    return StageResult([(m, [Emit(Topic.CODED, (m.key or b"").decode(), m.value or b"")]) for m in messages])


async def committed_total(settings: Settings, topic: str, isolation_level: str) -> int:
    """Records a reader of ``isolation_level`` can read now (the end offsets it is given:
    read_committed gets the last stable offset)."""
    async with started(make_consumer(settings, isolation_level=isolation_level)) as consumer:
        tps = [TopicPartition(topic, p) for p in range(raw_hop.PARTITIONS)]  # topics.yaml: 8 each
        return sum((await consumer.end_offsets(tps)).values())


async def stage_hop(settings: Settings, codec: Codec, source: Topic, n: int, guarantee: str) -> float:
    """Seconds for the stage to move n records from ``source`` to the coded topic."""
    settings = replace(settings, processing_guarantee=guarantee,
                       idempotence="on" if guarantee == "exactly_once" else settings.idempotence)
    destination = settings.topic(Topic.CODED)
    before = await committed_total(settings, destination, "read_committed")
    stop = asyncio.Event()
    started_at = time.perf_counter()
    task = asyncio.create_task(run_consumer_stage(settings, settings.bootstrap_servers, codec,
                                                  f"bench-eos-{uuid.uuid4().hex[:6]}", source, "bench", passthrough,
                                                  stop))
    try:
        while await committed_total(settings, destination, "read_committed") < before + n:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)  # polling the end offsets, not waiting on a race
        return time.perf_counter() - started_at
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def run(n: int) -> int:
    async with kafka() as bootstrap:
        settings = replace(Settings(), bootstrap_servers=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}.",
                           idempotence="off")
        codec = Codec.from_dir(settings.schemas_dir)
        await apply_topics(settings, load_topics(settings))
        values = raw_hop.claim_values(settings, codec)
        source = settings.topic(Topic.ENCOUNTERS)  # any 8-partition topic of topics.yaml; values are bytes here
        await raw_hop.produce_source(bootstrap, source, values, n)
        scratch = f"{settings.topic_prefix}raw-hop-destination"
        await raw_hop.create_topics(bootstrap, [scratch])
        destination = raw_hop.HighWater(bootstrap, scratch)
        await destination.start()
        try:
            raw_s, _ = await raw_hop.hop(bootstrap, source, destination, n, f"bench-raw-{uuid.uuid4().hex[:6]}",
                                         lambda value: value)
        finally:
            await destination.stop()
        at_least_once_s = await stage_hop(settings, codec, Topic.ENCOUNTERS, n, "at_least_once")
        exactly_once_s = await stage_hop(settings, codec, Topic.ENCOUNTERS, n, "exactly_once")
    print(f"Apache Kafka at {bootstrap}; {n} messages of {min(map(len, values))}–{max(map(len, values))} B, "
          "8 partitions, one run")
    for name, seconds in [("raw aiokafka hop (baseline)", raw_s), ("stage, at least once", at_least_once_s),
                          ("stage, exactly once (transactions)", exactly_once_s)]:
        print(f"{name:<40} {n / seconds:>9,.0f} msg/s  {raw_s / seconds:6.2f} x baseline")
    print(f"exactly once / at least once: {at_least_once_s / exactly_once_s:.2f} of the throughput")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000, help="messages per hop (default 50000)")
    args = parser.parse_args()
    return asyncio.run(run(args.messages))


if __name__ == "__main__":
    sys.exit(main())
