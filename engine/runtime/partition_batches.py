"""Records handed to aiokafka in one batch per topic partition (``send_batch``) rather than
one ``send`` each: BROKER.md measured 183,500 records/s against 44,000."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.partitioner import murmur2


class BatchProducer(Protocol):
    """What a batch send needs of aiokafka's producer."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]: ...

    async def partitions_for(self, topic: str) -> set[int]: ...


@dataclass(frozen=True, slots=True)
class PlacedRecord:
    """A record with its partition: a value of ``None`` is a tombstone."""

    topic: str
    partition: int
    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def key_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as aiokafka's producer places a keyed record."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


async def send_batches(producer: BatchProducer, records: Sequence[PlacedRecord]
                       ) -> list[tuple[list[int], asyncio.Future[Any]]]:
    """Hand ``records`` over, one batch per topic partition in the order of its records
    (another when a batch is full); for each batch, the indexes of its records in
    ``records`` and the future the broker's acknowledgement resolves."""
    by_partition: dict[tuple[str, int], list[int]] = {}
    for index, record in enumerate(records):
        by_partition.setdefault((record.topic, record.partition), []).append(index)
    handed: list[tuple[list[int], asyncio.Future[Any]]] = []
    for (topic, partition), indexes in by_partition.items():
        batch, members = producer.create_batch(), list[int]()
        for index in indexes:
            record = records[index]
            if batch.append(key=record.key, value=record.value, timestamp=None, headers=list(record.headers)) is None:
                handed.append((members, await producer.send_batch(batch, topic, partition=partition)))
                batch, members = producer.create_batch(), []
                batch.append(key=record.key, value=record.value, timestamp=None,  # the first always fits
                             headers=list(record.headers))
            members.append(index)
        handed.append((members, await producer.send_batch(batch, topic, partition=partition)))
    return handed
