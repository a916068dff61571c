"""The embedded broker: starts on loopback, answers Metadata, stops without orphans."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from aiokafka import AIOKafkaClient

from engine.runtime.broker import BrokerError, EmbeddedBroker, resolve_bootstrap, running_broker_address
from engine.settings import Settings

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose: read its state
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[1].split()[0] != "Z"


async def test_embedded_broker_serves_metadata_and_stops_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "broker.json"
    async with EmbeddedBroker(state_file=state) as broker:
        assert broker.bootstrap_servers.startswith("127.0.0.1:")
        client = AIOKafkaClient(bootstrap_servers=broker.bootstrap_servers)
        await client.bootstrap()
        assert client.cluster.brokers(), "Metadata names at least one broker"
        await client.close()
        recorded = json.loads(state.read_text())
        assert recorded["bootstrap_servers"] == broker.bootstrap_servers
        pid = recorded["broker_pid"]
        assert _alive(pid)
    assert not _alive(pid)
    assert not state.exists(), "the state file goes with the broker"


async def test_commands_find_a_running_broker_through_the_state_file(tmp_path: Path) -> None:
    settings = Settings(bootstrap_servers="", state_dir=tmp_path)
    with pytest.raises(BrokerError, match="no broker"):
        resolve_bootstrap(settings)
    async with EmbeddedBroker(state_file=settings.broker_state_file) as broker:
        assert resolve_bootstrap(settings) == broker.bootstrap_servers
    assert running_broker_address(settings) is None


def test_configured_bootstrap_wins(tmp_path: Path) -> None:
    settings = Settings(bootstrap_servers="kafka.example:9092", state_dir=tmp_path)
    assert resolve_bootstrap(settings) == "kafka.example:9092"
