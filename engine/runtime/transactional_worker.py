"""The engine's stages exactly once on Kafka (``CLAIMS_PROCESSING_GUARANTEE=exactly_once``):
each group of stages that share tables runs on aiokafka, not faust, with its outputs, its
table entries (as changelog records) and its input offsets in one transaction per input
partition. Why not faust's own transaction mode is in docs/reliability.md."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from engine.runtime.changelog_tables import ChangelogTable, changelog_records, restore
from engine.runtime.delivery import Outbound, OutputLimits
from engine.runtime.staged_state import StagedTable, StateJournal
from engine.runtime.stages import SourceMessage, Stage, StageResult, run_group, stage_groups, utcnow
from engine.runtime.transactions import PartitionProducers, TransactionalDelivery, exactly_once_settings
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Table

log = logging.getLogger(__name__)

C = TypeVar("C")


@dataclass
class GroupRunner(ConsumerRebalanceListener):  # type: ignore[misc]
    """One group of stages: a member of the app's consumer group over the group's topics.

    A rebalance waits for the batch in flight (its transactions commit first). When
    partitions are assigned, their producers fence any previous writer and the tables are
    restored from their changelogs before any record is read. A batch read across a
    rebalance is not handled: its partitions start again from their committed offsets. A
    partition this member was fenced out of is paused until the next assignment."""

    name: str
    consumer: AIOKafkaConsumer
    restorer: AIOKafkaConsumer
    delivery: TransactionalDelivery
    producers: PartitionProducers
    process: Callable[[Sequence[SourceMessage]], StageResult]
    tables: Sequence[ChangelogTable]
    batch_max: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    held: set[int] = field(default_factory=set)
    rebalances: int = 0
    failure: BaseException | None = None  # from a listener: raised by run()

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self.lock:  # the batch in flight is committed (or not) before the group moves on
            self.rebalances += 1

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Fence, then restore, before any record of the new assignment is handled.

        Every assigned partition's producer starts afresh: its InitProducerId fences
        whoever wrote as this partition before (a member that stalled past its session
        included) and aborts its open transaction, so the changelogs' last stable offset
        is past it. Then every held partition is restored, not only the new ones: one
        that left and came back may have been written by another member meanwhile. A
        failure here is kept and fails the runner (aiokafka only logs what a listener
        raises, and handling records on half-restored tables would decide them wrongly)."""
        async with self.lock:
            self.rebalances += 1
            try:
                for tp in list(self.producers.producers):
                    await self.producers.drop(tp)
                for tp in assigned:
                    await self.producers.for_partition(tp)
                numbers = {tp.partition for tp in assigned}
                for table in self.tables:
                    table.drop(self.held | numbers)
                self.held = set()
                read = await restore(self.restorer, self.tables, numbers)
                self.held = numbers
            except Exception as exc:  # noqa: BLE001 - kept, and raised by run()
                self.failure = exc
                log.error("%s: the assignment could not be fenced and restored: %s", self.name, type(exc).__name__)
                return
            log.info("%s: assigned %d partition(s); restored %d changelog record(s)", self.name, len(assigned), read)

    async def _rewind(self, batches: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Seek the partitions of a batch not handled back to their committed offset: a
        batch that getmany returned after the rebalance completed was fetched under the
        new assignment, its positions already past it, and skipping it lost it (268
        encounters in one chaos run)."""
        for tp, records in batches.items():
            if tp in self.consumer.assignment():
                committed = await self.consumer.committed(tp)
                self.consumer.seek(tp, records[0].offset if committed is None else committed)

    async def run(self, stop: asyncio.Event) -> None:
        from engine.runtime.kafka import source_message

        while not stop.is_set():
            if self.failure is not None:
                raise RuntimeError(f"{self.name}: partitions assigned but not restored") from self.failure
            seen = self.rebalances
            batches = await self.consumer.getmany(timeout_ms=200, max_records=self.batch_max)
            if not batches:
                continue
            async with self.lock:
                if self.rebalances != seen:  # read under the last assignment: start again where it was committed
                    await self._rewind(batches)
                    continue
                messages = [source_message(r) for records in batches.values() for r in records]
                with StateJournal.opened() as journal:
                    result = self.process(messages)
                    state = changelog_records(journal)
                    delivered = await self.delivery.deliver(result, functools.partial(_state_of, state))
                    journal.apply(delivered.committed)
                for tp in delivered.fenced:  # another member owns it now: leave it until the rebalance says so
                    if tp in self.consumer.assignment():
                        self.consumer.pause(tp)


def _state_of(state: dict[int, list[Outbound]], message: SourceMessage) -> list[Outbound]:
    return state.get(id(message), [])


async def run_transactionally(settings: Settings, bootstrap_servers: str, codec: Codec, stages: Sequence[Stage[C]],
                              make_context: Callable[[Mapping[Table, MutableMapping[str, str]]], C],
                              tables: Sequence[Table], partitions: int, stop: asyncio.Event) -> None:
    """Run ``stages`` exactly once until ``stop``: one ``GroupRunner`` per group of stages
    that share tables, in the app's consumer group (``settings.app_id``, as faust's)."""
    from engine.runtime.kafka import make_consumer, make_group_consumer, make_producer, started

    eos = exactly_once_settings(settings)
    store = {table: ChangelogTable(table.changelog(settings.app_id), partitions) for table in tables}
    context = make_context({table: StagedTable(changelog) for table, changelog in store.items()})
    runners: list[GroupRunner] = []
    for group in stage_groups(stages):
        consumer = make_group_consumer(eos, bootstrap_servers, settings.app_id, isolation_level="read_committed")
        producers = PartitionProducers(lambda tid: make_producer(eos, bootstrap_servers, tid), settings.app_id)
        runner = GroupRunner(
            group[0].name, consumer, make_consumer(eos.with_bootstrap(bootstrap_servers)),
            TransactionalDelivery(producers, group[0].name, codec, OutputLimits.of(settings), settings.topic, utcnow),
            producers, functools.partial(run_group, group, context, codec, topic_name=settings.topic),
            [store[t] for t in dict.fromkeys(Table(name) for stage in group for name in stage.state)],
            settings.batch_max)
        consumer.subscribe([settings.topic(stage.source) for stage in group], listener=runner)
        runners.append(runner)
    async with contextlib.AsyncExitStack() as clients:
        for runner in runners:
            clients.push_async_callback(runner.producers.close)
            await clients.enter_async_context(started(runner.restorer))
            await clients.enter_async_context(started(runner.consumer))
        tasks = [asyncio.create_task(runner.run(stop), name=runner.name) for runner in runners]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # a runner that failed fails the worker
