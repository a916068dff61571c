"""Exactly-once (``CLAIMS_PROCESSING_GUARANTEE=exactly_once``, Apache Kafka only): a stage
killed with its transaction open — outputs sent and on the broker, offsets added, not
committed — is restarted, and a ``read_committed`` reader sees every output exactly once,
though the log holds the aborted ones too; the engine's workers killed and restarted
through a closed loop leave no output of theirs twice for such a reader."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from rich.console import Console

from engine.cli.run import RunFailed, RunOptions, run_closed_loop
from engine.ops.chaos import parse_chaos
from engine.runtime.delivery import Outbound
from engine.runtime.kafka import (
    assign_all,
    make_consumer,
    make_group_consumer,
    make_producer,
    read_to_highwater,
    run_consumer_stage,
    started,
)
from engine.runtime.stages import Emit, SourceMessage, StageResult
from engine.runtime.transactions import commit_in_transaction, exactly_once_settings
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic
from tests.fixtures.kafka import SettingsFactory, on_broker

pytestmark = [pytest.mark.integration, on_broker("kafka"), pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
N_RECORDS = 240
GROUP = "eos-passthrough"


def passthrough(messages: Sequence[SourceMessage]) -> StageResult:
    """Each encounter record on to the coded topic as it is: the stage logic does not matter here."""
    return StageResult([(m, [Emit(Topic.CODED, (m.key or b"").decode(), m.value or b"")]) for m in messages])


#: The stage in a child process that dies (os._exit, as kill -9: no abort, no close) right
#: after its third transaction got its records onto the broker and its offsets added.
CRASHING_STAGE = textwrap.dedent("""
    import asyncio, os
    from aiokafka import AIOKafkaProducer
    from engine.runtime.kafka import run_consumer_stage
    from engine.settings import Settings
    from engine.wire.codec import default_codec
    from engine.wire.topics import Topic
    from tests.integration.test_exactly_once import GROUP, passthrough

    original = AIOKafkaProducer.send_offsets_to_transaction
    calls = 0

    async def die_in_the_third(self, offsets, group_id):
        global calls
        await original(self, offsets, group_id)
        calls += 1
        if calls == 3:
            await self.flush()  # the records are in the log, the transaction open
            os._exit(137)

    AIOKafkaProducer.send_offsets_to_transaction = die_in_the_third
    settings = Settings()
    asyncio.run(run_consumer_stage(settings, settings.bootstrap_servers, default_codec(settings.schemas_dir), GROUP,
                                   Topic.ENCOUNTERS, "eos-test", passthrough, asyncio.Event()))
""")


async def read(settings: Settings, topic: Topic, isolation_level: str) -> list[bytes]:
    async with started(make_consumer(settings, isolation_level=isolation_level)) as consumer:
        partitions = await assign_all(consumer, [settings.topic(topic)])
        records: list[bytes] = []
        await read_to_highwater(consumer, partitions, 30.0, lambda batch: records.extend(r.key for r in batch))
        return records


async def test_a_stage_killed_mid_transaction_commits_each_output_once(topic_settings: Settings) -> None:
    settings = exactly_once_settings(replace(topic_settings, processing_guarantee="exactly_once"))
    async with started(AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")) as producer:
        for i in range(N_RECORDS):
            await producer.send(settings.topic(Topic.ENCOUNTERS), value=b"v%d" % i, key=b"E%04d" % i)
        await producer.flush()
    env = {**os.environ, "CLAIMS_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
           "CLAIMS_TOPIC_PREFIX": settings.topic_prefix, "CLAIMS_STATE_DIR": str(settings.state_dir),
           "CLAIMS_PROCESSING_GUARANTEE": "exactly_once", "CLAIMS_IDEMPOTENCE": "on"}
    crashed = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", CRASHING_STAGE], env=env, cwd=ROOT,
                                      capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    in_the_log = await read(settings, Topic.CODED, "read_uncommitted")
    assert 0 < len(in_the_log) < N_RECORDS  # two transactions committed, the third's records written, open

    stop = asyncio.Event()
    restarted = asyncio.create_task(run_consumer_stage(settings, settings.bootstrap_servers,
                                                       Codec.from_dir(settings.schemas_dir), GROUP, Topic.ENCOUNTERS,
                                                       "eos-test", passthrough, stop))
    deadline = time.monotonic() + 150
    try:
        while len(committed := await read(settings, Topic.CODED, "read_committed")) < N_RECORDS:
            assert time.monotonic() < deadline, f"{len(committed)} of {N_RECORDS} outputs committed"
            assert not restarted.done(), restarted
    finally:
        stop.set()
        await asyncio.wait_for(restarted, 60)

    assert sorted(committed) == sorted(b"E%04d" % i for i in range(N_RECORDS))  # each once, none missing
    everything = await read(settings, Topic.CODED, "read_uncommitted")
    assert len(everything) > N_RECORDS  # the dead stage's open transaction did reach the log: aborted


#: The records the simulators write, at least once (the payer answers a 270 again after a
#: restart); everything else on the topics is the engine workers' output.
SIMULATOR_OUTPUTS = {Topic.ENCOUNTERS, Topic.ELIGIBILITY_RESPONSES, Topic.REMITTANCES, Topic.PAYER_CLAIMS,
                     Topic.CODING_ACTIONS}


@pytest.mark.timeout(600)
async def test_workers_killed_through_a_run_leave_no_output_twice_for_a_committed_reader(
    settings_factory: SettingsFactory,
) -> None:
    """At least once, the same kills leave hundreds of redelivered outputs for the
    stages to recognise (docs/reliability.md); here a read_committed reader sees none."""
    settings = settings_factory(processing_guarantee="exactly_once")
    kills = tuple(parse_chaos("worker:kill:4,worker:term:2,payer:kill:1"))
    options = RunOptions(encounters=1500, rate=60.0, seed=29, bad_rate=0.04, resend_rate=0.01, summary_path=None,
                         timeout_s=420, live=False, workers=2, chaos=kills, chaos_every_s=4.0)
    try:
        summary = await run_closed_loop(settings, options, Console(file=io.StringIO()))
    except RunFailed as failed:
        partial = failed.summary or {}
        pytest.fail(f"{failed}: audit {partial.get('audit')}")

    audited = summary["audit"]
    assert summary["chaos"]["kills"] == len(kills)
    assert (audited["lost"]["count"], audited["in_flight"]["count"], audited["duplicates"]) == (0, 0, 0), audited
    assert audited["ok"] and summary["settled"] is True
    assert {topic: n for topic, n in audited["redelivered_by_topic"].items()
            if Topic(topic) not in SIMULATOR_OUTPUTS} == {}


async def test_a_record_the_broker_refuses_aborts_its_whole_transaction(topic_settings: Settings) -> None:
    """A refused record fails only its own send future: the transaction must not commit the
    rest (nor the offsets) without it."""
    settings = exactly_once_settings(replace(topic_settings, processing_guarantee="exactly_once"))
    small = f"{settings.topic_prefix}small-records"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(small, 1, 1, topic_configs={"max.message.bytes": "1000"})])
    finally:
        await admin.close()
    source = TopicPartition(settings.topic(Topic.ENCOUNTERS), 0)
    records = [Outbound(settings.topic(Topic.CODED), b"E1", b"fits"), Outbound(small, b"E1", b"x" * 5_000)]
    async with started(make_producer(settings, settings.bootstrap_servers, "eos-refused-test")) as producer:
        with pytest.raises(KafkaError):
            await commit_in_transaction(producer, "eos-refused", records, {source: 1})
    assert await read(settings, Topic.CODED, "read_committed") == []
    group = make_group_consumer(settings, settings.bootstrap_servers, "eos-refused")
    async with started(group):
        assert await group.committed(source) is None  # the offsets went nowhere either
