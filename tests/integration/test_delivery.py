"""Nothing a stage emits is dropped for its size: on a real broker, a worker (its own
process, as `claims worker`) gets valid encounters mixed with inputs whose outputs cannot
be produced as they are; each of those ends in the dead-letter topic with the reason, its
source and a digest, and the valid ones beside them are processed."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from engine.cli.run import start_worker, stop_process
from engine.model.events import CodedEncounter, DeadLetter
from engine.runtime.kafka import make_producer
from engine.runtime.stages import DEAD_LETTER_KEEP_BYTES
from engine.settings import Settings
from engine.wire.codec import Codec, default_codec
from tests.factories import make_encounter
from tests.fixtures.kafka import wait_for_record

pytestmark = pytest.mark.integration

WAIT_S = 120.0
GARBAGE = bytes(range(256)) * 4060  # 1,039,360 bytes: the broker takes it; its whole dead letter would not fit


@contextlib.asynccontextmanager
async def worker_running(settings: Settings) -> AsyncIterator[None]:
    worker = start_worker(settings, settings.bootstrap_servers)
    try:
        yield
        assert worker.poll() is None, f"the worker exited ({worker.returncode}); see {settings.worker_log_file}"
    finally:
        stop_process(worker)


async def _send(settings: Settings, values: list[tuple[bytes, bytes]]) -> list[tuple[int, int]]:
    """Produce (key, value) pairs to partition 0 of the encounters topic, in one go (one
    batch for the worker); their (partition, offset)."""
    producer = make_producer(settings, settings.bootstrap_servers)
    await producer.start()
    try:
        futures = [await producer.send(settings.topic("encounters"), value, key=key, partition=0)
                   for key, value in values]
        return [((m := await f).partition, m.offset) for f in futures]
    finally:
        await producer.stop()


async def _coded(settings: Settings, codec: Codec, encounter_id: str) -> CodedEncounter:
    record = await wait_for_record(settings, settings.topic("coded"), lambda r: r.key == encounter_id.encode(), WAIT_S)
    return codec.decode(record.value, CodedEncounter)


async def _dead_letter(settings: Settings, codec: Codec, offset: int) -> DeadLetter:
    key = f"{settings.topic('encounters')}:0:{offset}".encode()
    record = await wait_for_record(settings, settings.topic("dead-letter"), lambda r: r.key == key, WAIT_S)
    return codec.decode(record.value, DeadLetter)


def _encounter(codec: Codec, encounter_id: str, **fields: object) -> tuple[bytes, bytes]:
    return encounter_id.encode(), codec.encode(make_encounter(encounter_id=encounter_id, **fields))


def _near_the_limit(codec: Codec, encounter_id: str, size: int = 1_048_000) -> tuple[bytes, bytes]:
    """An encounter of ``size`` bytes (a long note) whose code fails the checks."""
    base = len(codec.encode(make_encounter(encounter_id=encounter_id, diagnoses=["ZZZ.99"], clinical_note="")))
    return _encounter(codec, encounter_id, diagnoses=["ZZZ.99"], clinical_note="n" * (size - base - 3))


async def test_outputs_too_large_for_their_topic_are_dead_lettered_and_the_batch_goes_on(
    topic_settings: Settings,
) -> None:
    settings = topic_settings
    codec = default_codec(settings.schemas_dir)
    huge_code = _near_the_limit(codec, "ENC-NEAR-LIMIT")  # its review item carries it whole: > 1 MiB
    sent = [_encounter(codec, "ENC-BEFORE"), huge_code, (b"garbage", GARBAGE), _encounter(codec, "ENC-AFTER")]
    async with worker_running(settings):
        offsets = await _send(settings, sent)

        assert (await _coded(settings, codec, "ENC-BEFORE")).encounter_id == "ENC-BEFORE"
        assert (await _coded(settings, codec, "ENC-AFTER")).encounter_id == "ENC-AFTER"

        too_large = await _dead_letter(settings, codec, offsets[1][1])
        assert too_large.error_type == "OutputTooLarge"
        assert "CodingReviewItem for coding-review" in too_large.reason
        assert too_large.original_size == len(huge_code[1])
        assert too_large.original_sha256 == hashlib.sha256(huge_code[1]).hexdigest()
        assert too_large.original_truncated and too_large.original_value == huge_code[1][:DEAD_LETTER_KEEP_BYTES]

        garbage = await _dead_letter(settings, codec, offsets[2][1])
        assert garbage.error_type == "UndecodableEvent"
        assert garbage.original_truncated and garbage.original_value == GARBAGE[:DEAD_LETTER_KEEP_BYTES]
        assert (garbage.original_size, garbage.original_sha256) == (len(GARBAGE), hashlib.sha256(GARBAGE).hexdigest())


@pytest.mark.not_on("tansu", reason="Tansu 0.6.0 does not enforce a topic's max.message.bytes")
async def test_an_output_the_broker_refuses_is_dead_lettered_and_the_batch_goes_on(topic_settings: Settings) -> None:
    """The broker's limit for coding-review is lower than topics.yaml says (drift): the
    worker's check passes the item, the broker refuses it for good."""
    settings = topic_settings
    codec = default_codec(settings.schemas_dir)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        review = ConfigResource(ConfigResourceType.TOPIC, settings.topic("coding-review"),
                                {"max.message.bytes": "100000"})
        await admin.alter_configs([review])
    finally:
        await admin.close()
    refused = _encounter(codec, "ENC-REFUSED", diagnoses=["E11.9" + "9" * 200_000])  # review item ~400 KB
    async with worker_running(settings):
        offsets = await _send(settings, [_encounter(codec, "ENC-BEFORE"), refused, _encounter(codec, "ENC-AFTER")])

        assert (await _coded(settings, codec, "ENC-BEFORE")).encounter_id == "ENC-BEFORE"
        assert (await _coded(settings, codec, "ENC-AFTER")).encounter_id == "ENC-AFTER"
        letter = await _dead_letter(settings, codec, offsets[1][1])
        assert letter.error_type == "OutputRefused"
        assert "MessageSizeTooLargeError" in letter.reason
        assert letter.original_value == refused[1]
