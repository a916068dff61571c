"""The exactly-once worker's assignment: every assigned partition's producer is started
(fencing whoever wrote as it) before the tables are restored, every held partition is
restored again (one that left and came back may have been written meanwhile), and a
restore that fails stops the runner instead of leaving it on half-restored tables."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition

from engine.runtime import transactional_worker
from engine.runtime.changelog_tables import ChangelogTable
from engine.runtime.transactional_worker import GroupRunner


class Producers:
    """What the runner asks of ``PartitionProducers``, recorded in order."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.producers: dict[TopicPartition, object] = {}

    async def for_partition(self, tp: TopicPartition) -> object:
        self.events.append(f"start {tp.partition}")
        return self.producers.setdefault(tp, object())

    async def drop(self, tp: TopicPartition) -> None:
        self.events.append(f"drop {tp.partition}")
        self.producers.pop(tp)


def runner(events: list[str], table: ChangelogTable) -> GroupRunner:
    return GroupRunner("claims", consumer=Any, restorer=Any, delivery=Any,  # type: ignore[arg-type]
                       producers=Producers(events), process=lambda messages: Any,  # type: ignore[arg-type,return-value]
                       tables=[table], batch_max=10)


def tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition("claims.coded", p) for p in partitions]


async def test_producers_fence_before_every_held_partition_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    restored: list[set[int]] = []

    async def restore(consumer: object, tables: Sequence[ChangelogTable], partitions: set[int]) -> int:
        events.append("restore")
        restored.append(set(partitions))
        return 0

    monkeypatch.setattr(transactional_worker, "restore", restore)
    table = ChangelogTable("app-claims_by_encounter-changelog", 8)
    group = runner(events, table)

    await group.on_partitions_assigned(tps(0, 1))
    assert table.partition_of("E5") == 1
    table["E5"] = "C1"  # in memory while partition 1 was held; another member may change it meanwhile
    await group.on_partitions_revoked(tps(0, 1))
    await group.on_partitions_assigned(tps(1, 2))

    assert events == ["start 0", "start 1", "restore", "drop 0", "drop 1", "start 1", "start 2", "restore"]
    assert restored == [{0, 1}, {1, 2}]  # partition 1 came back: restored again, not trusted
    assert "E5" not in table and group.held == {1, 2}  # only the restore puts it back


async def test_a_restore_that_fails_stops_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    async def restore(consumer: object, tables: Sequence[ChangelogTable], partitions: set[int]) -> int:
        raise TimeoutError("changelog not read")

    monkeypatch.setattr(transactional_worker, "restore", restore)
    group = runner([], ChangelogTable("app-claims_by_encounter-changelog", 8))
    await group.on_partitions_assigned(tps(3))  # aiokafka would only log what a listener raises

    with pytest.raises(RuntimeError, match="not restored") as raised:
        await group.run(asyncio.Event())
    assert isinstance(raised.value.__cause__, TimeoutError) and group.held == set()
