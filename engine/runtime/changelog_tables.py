"""Tables of the exactly-once worker: in memory, backed by the same compacted changelog
topics faust's tables use (same records: the key and value as UTF-8, a deletion as a
tombstone), written only inside the transaction of the batch whose writes they are.

An entry lives in the changelog partition of its key (the producers' partitioner, as
faust's ``use_partitioner``), which for every table but the eligibility cache is the
partition of the source record it was written for. A worker holds the entries of the
partitions it owns: restored, ``read_committed``, when they are assigned, dropped when
they go.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.runtime.delivery import Outbound
from engine.runtime.partition_batches import key_partition as record_partition
from engine.runtime.staged_state import StateJournal, _Deleted


def key_partition(key: str, partitions: int) -> int:
    """The partition of the entry ``key``, as our producers place a record keyed the same."""
    return record_partition(key.encode(), partitions)


class ChangelogTable(MutableMapping[str, str]):
    """One table: its entries by key, and by changelog partition."""

    def __init__(self, changelog: str, partitions: int) -> None:
        self.changelog = changelog
        self.partitions = partitions
        self._data: dict[str, str] = {}

    def partition_of(self, key: str) -> int:
        """The changelog partition of ``key``."""
        return key_partition(key, self.partitions)

    def record(self, key: str, value: str | _Deleted) -> Outbound:
        """The changelog record of one write (a tombstone for a deletion)."""
        return Outbound(self.changelog, key.encode(), b"" if isinstance(value, _Deleted) else value.encode(),
                        tombstone=isinstance(value, _Deleted))

    def load(self, key: bytes | None, value: bytes | None) -> None:
        """One changelog record, as restoring reads it."""
        if key is None:
            return
        if value is None:
            self._data.pop(key.decode(), None)
        else:
            self._data[key.decode()] = value.decode()

    def drop(self, partitions: set[int]) -> None:
        """Forget the entries of changelog ``partitions`` (no longer this worker's)."""
        for key in [k for k in self._data if self.partition_of(k) in partitions]:
            del self._data[key]

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)


def changelog_records(journal: StateJournal) -> dict[int, list[Outbound]]:
    """The changelog records of a batch's pending writes, by source message (``id``), in
    order: what goes into that message's transaction with its outputs."""
    records: dict[int, list[Outbound]] = {}
    for write in journal.writes:
        if isinstance(write.table, ChangelogTable):
            records.setdefault(id(write.message), []).append(write.table.record(write.key, write.value))
    return records


async def restore(consumer: AIOKafkaConsumer, tables: Sequence[ChangelogTable], partitions: set[int],
                  timeout_s: float = 120.0) -> int:
    """Read each table's changelog ``partitions`` to their last stable offset into the
    tables (``consumer``: read_committed, no group); returns the records read."""
    deadline = time.monotonic() + timeout_s
    tps = {TopicPartition(table.changelog, p): table for table in tables for p in sorted(partitions)}
    if not tps:
        return 0
    for table in tables:
        table.drop(partitions)
    consumer.assign(list(tps))
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(list(tps))  # read_committed: the last stable offset
    read = 0
    pending = {tp for tp, end in ends.items() if end > 0}
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} changelog partition(s) not restored in {timeout_s:.0f} s "
                               f"(e.g. {min(pending)})")
        for tp, records in (await consumer.getmany(*pending, timeout_ms=200)).items():
            for record in records:
                if record.offset < ends[tp]:
                    tps[tp].load(record.key, record.value)
                    read += 1
        pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
    consumer.assign([])
    return read
