"""The changelog outbox: write order kept per partition whoever flushes, a flush that
returns only once the broker has every record written before it, and a failure that
stops it for good."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.runtime.changelog_outbox import ChangelogFailed, ChangelogOutbox, ChangelogRecord
from engine.runtime.changelog_tables import key_partition
from engine.runtime.faust_app import TABLE_PARTITIONS, GroupedStringTable, make_faust_app, outbox, string_table
from engine.settings import Settings
from simulators.payer import member_store


class _Batch:
    def __init__(self, room: int) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []
        self.room = room

    def append(self, *, key: bytes, value: bytes | None, timestamp: float | None,
               headers: list[tuple[str, bytes]]) -> object | None:
        if self.records and len(self.records) >= self.room:
            return None
        self.records.append((key, value))
        return object()


class _Producer:
    """aiokafka's producer as the outbox uses it: batches handed over in order, each
    acknowledged when the test says so (or at once)."""

    def __init__(self, room: int = 100, ack_at_once: bool = True) -> None:
        self.room, self.ack_at_once = room, ack_at_once
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes | None]], asyncio.Future[Any]]] = []
        self.hand_over = asyncio.Event()
        self.hand_over.set()

    def create_batch(self) -> _Batch:
        return _Batch(self.room)

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        await self.hand_over.wait()  # aiokafka may wait for metadata or room
        await asyncio.sleep(0)  # and yields to the loop on the way
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.ack_at_once:
            future.set_result(len(self.sent))
        self.sent.append((topic, partition, list(batch.records), future))
        return future

    def log(self, topic: str, partition: int) -> list[bytes]:
        """The keys a partition's log holds, in order."""
        return [key for t, p, records, _ in self.sent if (t, p) == (topic, partition) for key, _ in records]


async def _handed_over(producer: _Producer, batches: int) -> None:
    while len(producer.sent) < batches:
        await asyncio.sleep(0)


def _record(key: str, partition: int = 0, topic: str = "t-changelog") -> ChangelogRecord:
    return ChangelogRecord(topic, partition, key.encode(), f"v-{key}".encode())


async def test_one_batch_per_partition_each_in_write_order() -> None:
    producer = _Producer()
    box = ChangelogOutbox(lambda: producer)
    for n in range(6):
        box.put(_record(f"k{n}", partition=n % 2))
    await box.flush()
    assert [(p, [k for k, _ in records]) for _, p, records, _ in producer.sent] == [
        (0, [b"k0", b"k2", b"k4"]), (1, [b"k1", b"k3", b"k5"])]
    assert box.pending == []


async def test_a_full_batch_is_followed_by_another_in_order() -> None:
    producer = _Producer(room=2)
    box = ChangelogOutbox(lambda: producer)
    for n in range(5):
        box.put(_record(f"k{n}"))
    await box.flush()
    assert [len(records) for _, _, records, _ in producer.sent] == [2, 2, 1]
    assert producer.log("t-changelog", 0) == [b"k0", b"k1", b"k2", b"k3", b"k4"]


async def test_a_tombstone_goes_with_no_value() -> None:
    producer = _Producer()
    box = ChangelogOutbox(lambda: producer)
    box.put(ChangelogRecord("t-changelog", 3, b"gone", None))
    await box.flush()
    assert producer.sent[0][2] == [(b"gone", None)]


async def test_writes_of_two_writers_reach_a_partition_in_the_order_they_were_made() -> None:
    """The payer's timer writes a member's record while its agent's flush is still handing
    over: the timer's write (made later) must not overtake the agent's in the log."""
    producer = _Producer()
    producer.hand_over.clear()  # the first flush stalls inside send_batch
    box = ChangelogOutbox(lambda: producer)
    box.put(_record("agent-other", partition=1))  # handed over first: the flush stalls on it
    box.put(_record("agent-1"))
    agent = asyncio.create_task(box.flush())
    await asyncio.sleep(0)
    box.put(_record("timer-1"))  # written after the agent's records, while they hand over
    timer = asyncio.create_task(box.flush())
    await asyncio.sleep(0)
    producer.hand_over.set()
    await asyncio.wait_for(asyncio.gather(agent, timer), 5)
    assert producer.log("t-changelog", 0) == [b"agent-1", b"timer-1"]


async def test_a_flush_waits_for_records_another_flush_took() -> None:
    """A writer's records taken by a flush already under way (the background one) are not
    acknowledged yet: its own flush must wait for them, not return on an empty outbox."""
    producer = _Producer(ack_at_once=False)
    box = ChangelogOutbox(lambda: producer)
    box.put(_record("k"))  # starts a background flush
    await asyncio.wait_for(_handed_over(producer, 1), 5)
    assert box.pending == []  # taken by the background flush
    mine = asyncio.create_task(box.flush())
    await asyncio.sleep(0.01)
    assert not mine.done()  # the broker has not acknowledged the record yet
    producer.sent[0][3].set_result(0)
    await asyncio.wait_for(mine, 5)


async def test_a_record_not_acknowledged_stops_the_outbox_for_good() -> None:
    told: list[BaseException] = []
    producer = _Producer(ack_at_once=False)
    box = ChangelogOutbox(lambda: producer, told.append)
    box.put(_record("k"))
    flushing = asyncio.create_task(box.flush())
    await asyncio.wait_for(_handed_over(producer, 1), 5)
    producer.sent[0][3].set_exception(ConnectionError("broker gone"))
    with pytest.raises(ChangelogFailed):
        await asyncio.wait_for(flushing, 5)
    box.put(_record("later"))
    with pytest.raises(ChangelogFailed):
        await box.flush()
    assert [type(exc) for exc in told] == [ConnectionError]  # told once


async def test_a_cancelled_flush_leaves_its_records_in_flight() -> None:
    """A batch agent cancelled by a shutdown must not cancel the records others wait for."""
    producer = _Producer(ack_at_once=False)
    box = ChangelogOutbox(lambda: producer)
    box.put(_record("k"))
    first = asyncio.create_task(box.flush())
    await asyncio.wait_for(_handed_over(producer, 1), 5)
    second = asyncio.create_task(box.flush())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    assert not producer.sent[0][3].cancelled()
    producer.sent[0][3].set_result(0)
    await asyncio.wait_for(second, 5)


def test_a_faust_tables_writes_go_to_the_outbox_in_the_partition_of_their_key(tmp_path: Path) -> None:
    app = make_faust_app(replace(Settings(), state_dir=tmp_path), "outbox", "127.0.0.1:9")
    plain = string_table(app, "claims_by_encounter")
    members = string_table(app, "payer_members", GroupedStringTable)
    plain["ENC-1"] = "CLM-1"
    del plain["ENC-1"]
    entry = member_store.entry_key("PPO01|M1", member_store.CLAIM, "CLM-9")
    members[entry] = "{}"
    records = outbox(app).pending
    assert [(r.topic, r.key, r.value) for r in records] == [
        ("outbox-claims_by_encounter-changelog", b"ENC-1", b"CLM-1"),
        ("outbox-claims_by_encounter-changelog", b"ENC-1", None),
        ("outbox-payer_members-changelog", entry.encode(), b"{}")]
    assert records[0].partition == key_partition("ENC-1", TABLE_PARTITIONS)
    assert records[2].partition == key_partition("PPO01|M1", TABLE_PARTITIONS)  # the member's, not the entry's
