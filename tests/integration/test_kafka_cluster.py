"""A 3-node Apache Kafka cluster on loopback under faults: the partition leader killed
mid-run, then a rolling restart of every node during a run. The run must settle with every
identity holding: nothing lost, no original claim twice."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from rich.console import Console

from engine.cli.run import RunFailed, RunOptions, run_closed_loop
from engine.runtime.kafka_cluster import KafkaCluster
from engine.settings import Settings
from engine.wire.topics import Topic
from tests.fixtures.kafka import isolated_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(600),  # a 2,000-encounter run on three JVMs and two cores, with a fault in it
    pytest.mark.skipif("kafka" not in os.environ.get("CLAIMS_TEST_BROKERS", "kafka"),
                       reason="CLAIMS_TEST_BROKERS leaves out Apache Kafka, the only broker with replicas"),
]

N_ENCOUNTERS = 2000
#: The run's own bound, well inside the test's: a run that does not settle then fails with
#: its audit (what is lost, stuck or twice) instead of being cut off by pytest-timeout.
RUN_TIMEOUT_S = 360


@pytest_asyncio.fixture(scope="module")
async def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KafkaCluster]:
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka3"), nodes=3, lib_root=Settings().kafka_lib_dir)
    await cluster.start()
    try:
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)


async def wait_for_records(settings: Settings, topic: Topic, at_least: int, timeout_s: float) -> None:
    """Until ``topic`` holds ``at_least`` records (its end offsets: ListOffsets is right on
    Kafka, and this is cheap while the run is at full speed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000)
    await consumer.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                cluster = await consumer._client.fetch_all_metadata()
                partitions = [TopicPartition(settings.topic(topic), p)
                              for p in sorted(cluster.partitions_for_topic(settings.topic(topic)) or ())]
                if partitions and sum((await consumer.end_offsets(partitions)).values()) >= at_least:
                    return
            except KafkaError:  # a node is down and the metadata not yet updated: ask again
                pass
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
    raise TimeoutError(f"fewer than {at_least} records on {topic} after {timeout_s}s")


async def run_with_fault(settings: Settings, fault: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    """A bounded run at full speed; ``fault`` strikes once a quarter of the claims are out."""
    options = RunOptions(encounters=N_ENCOUNTERS, rate=None, seed=11, bad_rate=0.04, resend_rate=0.01,
                         summary_path=None, timeout_s=RUN_TIMEOUT_S, live=False)
    run = asyncio.create_task(run_closed_loop(settings, options, Console(file=io.StringIO())))
    try:
        await wait_for_records(settings, Topic.CLAIMS_SUBMITTED, N_ENCOUNTERS // 4, timeout_s=300)
        await fault()
        try:
            return await run
        except RunFailed as failed:  # say what did not settle, so a CI log shows which identity broke
            partial = failed.summary or {}
            broken = {name: identity for name, identity in partial.get("identities", {}).items()
                      if not identity["holds"]}
            pytest.fail(f"{failed}: broken identities {broken}, repeated claim ids "
                        f"{partial.get('repeated_claim_ids')}, redelivered {partial.get('redelivered')}, "
                        f"audit {partial.get('audit')}")
    finally:
        if not run.done():
            run.cancel()


def assert_settled_without_loss_or_duplicates(summary: dict[str, Any]) -> None:
    unsettled = {key: summary.get(key) for key in ("audit", "identities", "chaos", "failure") if key in summary}
    assert summary["settled"] is True, unsettled
    broken = [name for name, identity in summary["identities"].items() if not identity["holds"]]
    assert broken == []
    assert summary["encounters"] >= N_ENCOUNTERS
    assert summary["repeated_claim_ids"] == 0  # no original claim submitted twice


async def test_the_run_settles_when_the_partition_leader_is_killed(three_nodes: KafkaCluster, tmp_path: Path) -> None:
    settings = isolated_settings(three_nodes.bootstrap_servers, tmp_path)

    async def kill_the_leader() -> None:
        leader = await three_nodes.leader_of(settings.topic(Topic.CLAIMS_SUBMITTED), 0)
        three_nodes.kill(leader)  # SIGKILL: no controlled shutdown
        await three_nodes.wait_ready(nodes=2)
        await wait_for_records(settings, Topic.REMITTANCES, N_ENCOUNTERS // 4, timeout_s=300)  # it goes on
        await three_nodes.restart_node(leader)

    summary = await run_with_fault(settings, kill_the_leader)

    assert_settled_without_loss_or_duplicates(summary)
    await three_nodes.wait_in_sync()


async def test_the_run_settles_through_a_rolling_restart(three_nodes: KafkaCluster, tmp_path: Path) -> None:
    settings = isolated_settings(three_nodes.bootstrap_servers, tmp_path)

    async def roll() -> None:
        for node in three_nodes.members:
            await three_nodes.restart_node(node.node_id)  # SIGTERM, controlled shutdown, start
            await three_nodes.wait_in_sync()  # the next goes down only with every replica back

    summary = await run_with_fault(settings, roll)

    assert_settled_without_loss_or_duplicates(summary)
