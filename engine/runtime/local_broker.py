"""The broker a command starts on this machine when none is configured: the embedded
Tansu or an Apache Kafka cluster on loopback, behind one context manager."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.runtime.broker import EmbeddedBroker
from engine.runtime.kafka_cluster import KafkaCluster
from engine.settings import Settings


def kafka_cluster(settings: Settings, directory: Path, nodes: int | None = None, port: int = 0,
                  state_file: Path | None = None) -> KafkaCluster:
    return KafkaCluster(directory, nodes=nodes or settings.kafka_nodes, port=port, lib_root=settings.kafka_lib_dir,
                        heap_mb=settings.kafka_heap_mb, state_file=state_file)


@dataclass(frozen=True)
class RunBroker:
    """A run's broker: where it listens and, when the run started it, its processes by
    name, so the run notices when one dies (none for a broker that is not the run's)."""

    bootstrap_servers: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def run_broker(settings: Settings, kind: str) -> AsyncIterator[RunBroker]:
    """A broker for one run, gone with it: Tansu keeps nothing; a Kafka cluster for a run
    starts from empty log directories (``state_dir/kafka-run``), as a run's encounter ids
    are the seed's and would otherwise meet last run's claims."""
    if kind == "kafka":
        directory = settings.state_dir / "kafka-run"
        shutil.rmtree(directory, ignore_errors=True)
        cluster = kafka_cluster(settings, directory, state_file=settings.broker_state_file)
        async with cluster:
            yield RunBroker(cluster.bootstrap_servers, {f"embedded broker (kafka node {node.node_id})": node.process
                                                        for node in cluster.members if node.process is not None})
        return
    async with EmbeddedBroker(state_file=settings.broker_state_file) as broker:
        assert broker.process is not None
        yield RunBroker(broker.bootstrap_servers, {"embedded broker (tansu)": broker.process})
