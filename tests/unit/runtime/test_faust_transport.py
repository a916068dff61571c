"""engine.runtime.faust_transport: a fetch handed to faust's streams in one task must hand
over what faust's per-record drain did, in the same order, and stop where it stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from engine.runtime.faust_app import make_faust_app
from engine.runtime.faust_transport import ChunkConsumer
from engine.settings import Settings

A = TP("encounters", 0)
B = TP("encounters", 1)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


def fetch(tp: TP, *offsets: int) -> list[tuple[TP, Any]]:
    return [(tp, Record(tp.topic, tp.partition, offset)) for offset in offsets]


@pytest.fixture
async def consumer(tmp_path: Path) -> AsyncIterator[ChunkConsumer]:
    app = make_faust_app(replace(Settings(), state_dir=tmp_path), "transport", "127.0.0.1:9")
    made = app.consumer  # never started: no broker is reached
    assert isinstance(made, ChunkConsumer)  # the apps' broker URL selects this transport
    yield made
    made._thread.thread_loop.close()  # the consumer thread's own loop, made with the consumer


def handed_to(consumer: ChunkConsumer) -> list[tuple[TP, int]]:
    seen: list[tuple[TP, int]] = []

    async def callback(message: Any) -> None:
        seen.append((message.tp, message.offset))

    consumer.callback = callback
    return seen


async def test_every_record_of_a_fetch_is_handed_over_in_order(consumer: ChunkConsumer) -> None:
    seen = handed_to(consumer)
    records = fetch(A, 0, 1, 2) + fetch(B, 7) + fetch(A, 3)
    await consumer.hand_over(records)
    assert seen == [(tp, message.offset) for tp, message in records]
    assert consumer._read_offset[A] == 3 and consumer._read_offset[B] == 7


async def test_a_record_below_the_read_offset_is_dropped_as_faust_drops_it(consumer: ChunkConsumer) -> None:
    seen = handed_to(consumer)
    consumer._read_offset[A] = 5
    await consumer.hand_over(fetch(A, 4, 5, 6))
    assert seen == [(A, 5), (A, 6)]


async def test_offsets_skipped_within_a_fetch_are_noted_as_a_gap(consumer: ChunkConsumer) -> None:
    handed_to(consumer)
    consumer.app.topics.acks_enabled_for = lambda topic: True  # type: ignore[method-assign]
    await consumer.hand_over(fetch(A, 1, 2, 5))
    # faust's interval for offsets 3 and 4 ends past the record that closed the gap (5), as in its drain
    assert [(i.begin, i.end) for i in sorted(consumer._gap[A])] == [(3, 6)]


async def test_a_rebalance_cuts_the_fetch_at_the_record_in_flight(consumer: ChunkConsumer) -> None:
    """A full stream queue holds the hand-over of offset 1 when the flow is suspended: faust
    gave up that record (with its read offset set) and none after it was handed over."""
    seen: list[int] = []
    waiting = asyncio.Event()

    async def callback(message: Any) -> None:
        if message.offset == 1:
            waiting.set()
            await asyncio.Event().wait()  # a stream queue that stays full
        seen.append(message.offset)

    consumer.callback = callback
    handing = asyncio.ensure_future(consumer.hand_over(fetch(A, 0, 1, 2, 3)))
    await asyncio.wait_for(waiting.wait(), 5)
    consumer.stop_flow()
    await asyncio.wait_for(handing, 5)
    assert seen == [0]
    assert consumer._read_offset[A] == 1


async def test_a_fetch_larger_than_a_turn_lets_the_loop_run(consumer: ChunkConsumer) -> None:
    """faust yields to the event loop every hundred records; a long fetch must too, or a
    stream could not take records off its queue while the fetch is being handed over."""
    handed_to(consumer)
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    counter = asyncio.ensure_future(count_turns())
    await asyncio.sleep(0)
    before = turns
    await consumer.hand_over(fetch(A, *range(1000)))
    counter.cancel()
    assert turns - before >= 9
