"""engine.runtime.delivery: what a stage emits is fitted to its topic's size limit
before it is produced; what does not fit becomes a dead letter of its source record."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, UnsupportedVersionError
from aiokafka.partitioner import DefaultPartitioner

from engine.model.events import ClaimSubmitted, DeadLetter, Encounter
from engine.runtime.delivery import RECORD_OVERHEAD_BYTES, OutputLimits, deliver_result, fit_outputs
from engine.runtime.stages import (
    DEAD_LETTER_KEEP_BYTES,
    DEAD_LETTER_TOPIC,
    Emit,
    SourceMessage,
    StageResult,
    dead_letter,
    run_stage,
)
from engine.wire.topics import Topic

NOW = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


def message(value: bytes, offset: int = 7) -> SourceMessage:
    return SourceMessage("t.encounters", 3, offset, b"ENC-1", value)


def test_a_small_original_is_kept_whole_with_its_size_and_digest() -> None:
    letter: DeadLetter = dead_letter("coding", message(b"\x00garbage"), ValueError("bad"), NOW).event
    assert letter.original_value == b"\x00garbage"
    assert letter.original_size == 8
    assert letter.original_sha256 == hashlib.sha256(b"\x00garbage").hexdigest()
    assert letter.original_truncated is False


def test_a_large_original_is_cut_to_its_first_bytes_and_keeps_the_whole_ones_size_and_digest() -> None:
    value = bytes(range(256)) * 4000  # 1,024,000 bytes: under Kafka's 1 MiB, over what a letter may carry
    letter: DeadLetter = dead_letter("coding", message(value), ValueError("bad"), NOW).event
    assert letter.original_value == value[:DEAD_LETTER_KEEP_BYTES]
    assert letter.original_size == len(value)
    assert letter.original_sha256 == hashlib.sha256(value).hexdigest()
    assert letter.original_truncated is True


def test_an_output_over_its_topics_limit_becomes_a_dead_letter_of_its_source(codec, make_encounter) -> None:
    small = codec.encode(make_encounter(encounter_id="ENC-SMALL"))
    big = codec.encode(make_encounter(encounter_id="ENC-BIG", clinical_note="n" * 50_000))
    limits = OutputLimits({Topic.CODED: 20_000, DEAD_LETTER_TOPIC: 1 << 20})
    result = run_stage(
        "coding",
        [message(small, 1), message(big, 2)],
        codec,
        Encounter,
        lambda enc, m: [Emit(Topic.CODED, enc.encounter_id, enc)],
        now=lambda: NOW,
    )

    fitted = fit_outputs("coding", result, codec, limits, lambda topic: f"t.{topic}", lambda: NOW)

    (first,), (second,) = fitted
    assert (first.topic, first.key) == ("t.coded", b"ENC-SMALL")
    assert codec.decode(first.value, Encounter).encounter_id == "ENC-SMALL"
    assert second.topic == "t.dead-letter" and second.key == b"t.encounters:3:2"
    letter = codec.decode(second.value, DeadLetter)
    assert letter.error_type == "OutputTooLarge"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("t.encounters", 3, 2)
    assert "coded" in letter.reason and "20000" in letter.reason
    assert letter.original_value == big and letter.original_size == len(big)
    assert "n" * 100 not in letter.reason  # sizes, not content (PHI)


def test_an_output_its_schema_cannot_hold_becomes_a_dead_letter_not_a_stall(codec, make_claim, caplog) -> None:
    """A charge beyond decimal(12, 2) cannot be encoded: before, fit_outputs raised and the
    batch was read again forever; now its source is dead-lettered and its neighbour goes."""
    good = make_claim(claim_id="C-GOOD")
    bad = dataclasses.replace(good, claim_id="C-BAD", total_charge=Decimal("12345678901234.56"))
    result = run_stage(
        "claims",
        [message(codec.encode(good), 1), message(codec.encode(good), 2)],
        codec,
        ClaimSubmitted,
        lambda claim, m: [Emit(Topic.CLAIMS_SUBMITTED, claim.claim_id, good if m.offset == 1 else bad)],
        now=lambda: NOW,
    )

    fitted = fit_outputs("claims", result, codec, OutputLimits({DEAD_LETTER_TOPIC: 1 << 20}),
                         lambda topic: f"t.{topic}", lambda: NOW)

    (first,), (second,) = fitted
    assert first.topic == "t.claims-submitted" and codec.decode(first.value, ClaimSubmitted).claim_id == "C-GOOD"
    assert second.topic == "t.dead-letter" and second.instead
    letter = codec.decode(second.value, DeadLetter)
    assert letter.error_type == "OutputNotEncodable"
    assert "ClaimSubmitted for claims-submitted cannot be encoded" in letter.reason
    assert (letter.source_offset, letter.original_value) == (2, codec.encode(good))
    assert "cannot be encoded" in caplog.text and "precision" not in caplog.text  # the log: what, not values


def test_an_output_just_under_the_limit_goes_as_it_is(codec, make_encounter) -> None:
    encounter = make_encounter()
    size = len(codec.encode(encounter)) + len(encounter.encounter_id) + RECORD_OVERHEAD_BYTES
    limits = OutputLimits({Topic.CODED: size, DEAD_LETTER_TOPIC: 1 << 20})
    result = run_stage(
        "coding",
        [message(codec.encode(encounter))],
        codec,
        Encounter,
        lambda enc, m: [Emit(Topic.CODED, enc.encounter_id, enc)],
        now=lambda: NOW,
    )
    assert [r.topic for (r,) in fit_outputs("coding", result, codec, limits, str, lambda: NOW)] == ["coded"]
    tighter = OutputLimits({Topic.CODED: size - 1, DEAD_LETTER_TOPIC: 1 << 20})
    assert [r.topic for (r,) in fit_outputs("coding", result, codec, tighter, str, lambda: NOW)] == ["dead-letter"]


def test_a_passed_through_record_is_not_encoded_again(codec) -> None:
    framed = b"\x00\x00\x00\x00\x01already framed"
    result = StageResult([(message(framed), [Emit(Topic.CODED, "k", framed)])])
    ((record,),) = fit_outputs("coding", result, codec, OutputLimits({Topic.CODED: 1 << 20}), str, lambda: NOW)
    assert record.value == framed


def test_the_dead_letter_topic_takes_the_largest_letter_a_stage_writes() -> None:
    from engine.settings import Settings
    from engine.wire.topics import load_topics

    specs = load_topics(Settings())
    largest_letter = DEAD_LETTER_KEEP_BYTES + 64 * 1024  # reason ≤ 1000 chars, key ≤ 1 KiB, ids: well under
    assert specs[DEAD_LETTER_TOPIC].max_message_bytes >= largest_letter


async def test_a_send_that_timed_out_is_sent_again_not_dead_lettered(codec, make_encounter) -> None:
    """aiokafka fails a batch that expired unsent (the broker away past the request timeout)
    with ``KafkaTimeoutError``, which it marks not retriable: it is retried all the same."""
    attempts: list[str] = []

    async def send(topic: str, key: bytes, value: bytes,
                   headers: object = ()) -> asyncio.Future[object]:
        attempts.append(topic)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if len(attempts) == 1:
            future.set_exception(KafkaTimeoutError())
        else:
            future.set_result(None)
        return future

    enc = make_encounter(encounter_id="ENC-1")
    result = run_stage("coding", [message(codec.encode(enc))], codec, Encounter,
                       lambda e, m: [Emit(Topic.CODED, e.encounter_id, e)], now=lambda: NOW)
    limits = OutputLimits({Topic.CODED: 1 << 20, DEAD_LETTER_TOPIC: 1 << 20})
    delivered = await deliver_result(send, "coding", result, codec, limits, str, lambda: NOW)
    assert attempts == ["coded", "coded"] and delivered(result.outputs[0][0])


class _Batch:
    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    def append(self, *, key: bytes, value: bytes | None, timestamp: float | None,
               headers: list[tuple[str, bytes]]) -> object:
        self.records.append((key, value))
        return object()


class _BatchProducer:
    """aiokafka's producer as a batch send uses it; ``refuse`` decides the outcome of each
    batch handed over (None: acknowledged)."""

    def __init__(self, refuse: Callable[[list[tuple[bytes, bytes | None]]], BaseException | None]) -> None:
        self.refuse = refuse
        self.batches: list[tuple[str, int, list[tuple[bytes, bytes | None]]]] = []

    def create_batch(self) -> _Batch:
        return _Batch()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(8))

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[object]:
        self.batches.append((topic, partition, batch.records))
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        error = self.refuse(batch.records)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
        return future


def _coding_batch(codec, make_encounter, ids: list[str]) -> StageResult:  # type: ignore[no-untyped-def]
    messages = [SourceMessage("t.encounters", 0, n, i.encode(), codec.encode(make_encounter(encounter_id=i)))
                for n, i in enumerate(ids)]
    return run_stage("coding", messages, codec, Encounter,
                     lambda e, m: [Emit(Topic.CODED, e.encounter_id, e)], now=lambda: NOW)


async def test_a_batch_goes_in_one_batch_per_partition_where_the_producer_would_put_each_key(
        codec, make_encounter) -> None:
    ids = [f"ENC-{n}" for n in range(40)]
    result = _coding_batch(codec, make_encounter, ids)
    producer = _BatchProducer(lambda records: None)

    async def send(*args: object) -> asyncio.Future[object]:
        raise AssertionError("every record goes in a batch")

    limits = OutputLimits({Topic.CODED: 1 << 20, DEAD_LETTER_TOPIC: 1 << 20})
    delivered = await deliver_result(send, "coding", result, codec, limits, str, lambda: NOW, lambda: producer)
    assert all(delivered(message) for message, _ in result.outputs)
    placed = {key: partition for _, partition, records in producer.batches for key, _ in records}
    partitions = list(range(8))
    assert placed == {i.encode(): DefaultPartitioner()(i.encode(), partitions, partitions) for i in ids}
    assert len(producer.batches) == len(set(placed.values()))  # one batch per partition
    for _, _, records in producer.batches:  # each in the order of its sources
        keys = [key for key, _ in records]
        assert keys == sorted(keys, key=lambda k: ids.index(k.decode()))


async def test_a_batch_refused_for_good_letters_only_the_message_it_was_refused_for(codec, make_encounter) -> None:
    """The broker refuses a whole batch for one record (too large, invalid): the messages in
    it are sent again one record at a time, and only the culprit's dead letter goes."""
    ids = [f"ENC-{n}" for n in range(12)]
    result = _coding_batch(codec, make_encounter, ids)
    culprit = b"ENC-5"
    producer = _BatchProducer(lambda records: MessageSizeTooLargeError()
                              if any(key == culprit for key, _ in records) else None)
    sent_alone: list[bytes] = []

    async def send(topic: str, key: bytes, value: bytes, headers: object = ()) -> asyncio.Future[object]:
        sent_alone.append(key)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if key == culprit:
            future.set_exception(MessageSizeTooLargeError())
        else:
            future.set_result(None)
        return future

    limits = OutputLimits({Topic.CODED: 1 << 20, DEAD_LETTER_TOPIC: 1 << 20})
    delivered = await deliver_result(send, "coding", result, codec, limits, str, lambda: NOW, lambda: producer)
    assert [message.key for message, _ in result.outputs if not delivered(message)] == [culprit]
    refused_batch = next(records for _, _, records in producer.batches if any(key == culprit for key, _ in records))
    assert sent_alone == [key for key, _ in refused_batch]  # the refused batch's messages, one by one
    letters = [records for topic, _, records in producer.batches if topic == "dead-letter"]
    assert len(letters) == 1 and letters[0][0][0] == b"t.encounters:0:5"


async def test_a_batch_that_timed_out_is_sent_again_not_dead_lettered(codec, make_encounter) -> None:
    result = _coding_batch(codec, make_encounter, ["ENC-1", "ENC-2"])
    attempts = []

    def refuse(records: list[tuple[bytes, bytes | None]]) -> BaseException | None:
        attempts.append([key for key, _ in records])
        return KafkaTimeoutError() if len(attempts) == 1 else None

    producer = _BatchProducer(refuse)

    async def send(*args: object) -> asyncio.Future[object]:
        raise AssertionError("a batch that timed out goes again as a batch")

    limits = OutputLimits({Topic.CODED: 1 << 20, DEAD_LETTER_TOPIC: 1 << 20})
    delivered = await deliver_result(send, "coding", result, codec, limits, str, lambda: NOW, lambda: producer)
    assert all(delivered(message) for message, _ in result.outputs) and len(attempts) >= 2


async def test_a_batch_that_could_not_be_handed_over_is_sent_message_by_message(codec, make_encounter) -> None:
    """The producer failing before a batch left (its metadata, say) names no message: each
    is sent again alone, and only a message refused alone is dead-lettered."""
    result = _coding_batch(codec, make_encounter, ["ENC-1", "ENC-2"])
    producer = _BatchProducer(lambda records: None)

    async def no_metadata(topic: str) -> set[int]:
        raise UnsupportedVersionError()  # a KafkaError aiokafka does not retry

    producer.partitions_for = no_metadata  # type: ignore[method-assign]
    sent_alone: list[bytes] = []

    async def send(topic: str, key: bytes, value: bytes, headers: object = ()) -> asyncio.Future[object]:
        sent_alone.append(key)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    limits = OutputLimits({Topic.CODED: 1 << 20, DEAD_LETTER_TOPIC: 1 << 20})
    delivered = await deliver_result(send, "coding", result, codec, limits, str, lambda: NOW, lambda: producer)
    assert all(delivered(message) for message, _ in result.outputs)
    assert sent_alone == [b"ENC-1", b"ENC-2"]
