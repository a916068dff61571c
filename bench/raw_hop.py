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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.model.events import ClaimSubmitted  # noqa: E402
from engine.ops.baseline import (  # noqa: E402  (re-exported: bench/loop.py and exactly_once.py use them)
    PARTITIONS,
    HighWater,
    claim_values,
    create_topics,
    hop,
    hop_topics,
    produce_source,
)
from engine.runtime.broker import EmbeddedBroker  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.wire.codec import Codec  # noqa: E402

__all__ = ["PARTITIONS", "HighWater", "claim_values", "create_topics", "hop", "produce_source"]


@contextlib.asynccontextmanager
async def broker() -> AsyncIterator[tuple[str, str]]:
    external = os.environ.get("CLAIMS_KAFKA_BOOTSTRAP", "")
    if external:
        yield external, "external (CLAIMS_KAFKA_BOOTSTRAP)"
        return
    async with EmbeddedBroker() as embedded:
        yield embedded.bootstrap_servers, "embedded Tansu (memory)"


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
    hop_timeout = 30 + n / 1_000  # generous (2 cores: ~10k msg/s at worst): only a hang trips it
    wall = time.perf_counter()
    async with broker() as (bootstrap, kind):
        print(f"broker: {kind} at {bootstrap}; {n} messages, {PARTITIONS} partitions, "
              f"values {sizes[0]}–{sizes[-1]} B (framed ClaimSubmitted)")
        async with hop_topics(bootstrap, "bench.raw-hop", values, n) as topics:
            print(f"{'produce (send() per message)':<44} {n / topics.produce_s:>9,.0f} msg/s  "
                  f"({topics.produce_s:.2f} s)")
            for index, (name, transform) in enumerate(variants):
                async with asyncio.timeout(hop_timeout):
                    seconds, batches = await hop(bootstrap, topics.source, topics.destination, n,
                                                 f"bench-raw-hop-{uuid.uuid4().hex[:8]}-{index}", transform)
                print(f"{'hop: ' + name:<44} {n / seconds:>9,.0f} msg/s  ({seconds:.2f} s, "
                      f"{batches} getmany, {n / batches:,.0f} msg each)")
            written = sum(topics.destination.base.values())
            if written != n * len(variants):
                raise SystemExit(f"destination holds {written}, expected {n * len(variants)}")
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
