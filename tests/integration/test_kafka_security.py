"""TLS and SASL end to end: a Kafka node whose only client listener is SASL_SSL (a CA and
certificates made for the test, client certificates presented), a small closed loop through
it with SCRAM-SHA-512, topics and a round trip with PLAIN, and a wrong password refused in one
clear line."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import pytest_asyncio
import trustme
from cryptography.hazmat.primitives import serialization
from rich.console import Console

from engine.cli.run import RunOptions, run_closed_loop
from engine.runtime.kafka import ClusterRefused, check_connection, make_producer, read_topic
from engine.runtime.kafka_cluster import KafkaCluster, ListenerSecurity
from engine.settings import Settings
from engine.wire.topics import Topic, apply_topics, load_topics
from tests.fixtures.kafka import isolated_settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif("kafka" not in os.environ.get("CLAIMS_TEST_BROKERS", "kafka"),
                       reason="CLAIMS_TEST_BROKERS leaves out Apache Kafka; Tansu 0.6.0 has no TLS or SASL listener"),
]

PASSWORD = "alice-secret-1"


@dataclass(frozen=True)
class SecureCluster:
    cluster: KafkaCluster
    ca_file: Path
    client_cert: Path
    client_key: Path

    def settings(self, directory: Path, mechanism: str, password: str = PASSWORD) -> Settings:
        return replace(isolated_settings(self.cluster.bootstrap_servers, directory),
                       security_protocol="SASL_SSL", sasl_mechanism=mechanism, sasl_username="alice",
                       sasl_password=password, ssl_cafile=str(self.ca_file), ssl_certfile=str(self.client_cert),
                       ssl_keyfile=str(self.client_key))


def pkcs8(pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(pem, password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest_asyncio.fixture(scope="module")
async def secure(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecureCluster]:
    certs = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    broker = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("alice@claimflow.test")
    paths = {name: certs / name for name in ("ca.pem", "broker.key", "broker.pem", "client.key", "client.pem")}
    ca.cert_pem.write_to_path(str(paths["ca.pem"]))
    paths["broker.key"].write_bytes(pkcs8(broker.private_key_pem.bytes()))  # what Kafka's PEM key store reads
    broker.cert_chain_pems[0].write_to_path(str(paths["broker.pem"]))
    client.private_key_pem.write_to_path(str(paths["client.key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client.pem"]))
    security = ListenerSecurity("SASL_SSL", ca_file=paths["ca.pem"], key_file=paths["broker.key"],
                                cert_file=paths["broker.pem"], client_auth="requested",
                                users={"admin": "admin-secret", "alice": PASSWORD})
    cluster = KafkaCluster(tmp_path_factory.mktemp("kafka-sasl"), nodes=1, lib_root=Settings().kafka_lib_dir,
                           security=security)
    await cluster.start()
    try:
        yield SecureCluster(cluster, paths["ca.pem"], paths["client.pem"], paths["client.key"])
    finally:
        await asyncio.to_thread(cluster.stop)


async def test_a_small_loop_runs_through_a_sasl_ssl_listener(secure: SecureCluster, tmp_path: Path) -> None:
    settings = secure.settings(tmp_path, "SCRAM-SHA-512")
    options = RunOptions(encounters=60, rate=None, seed=4, bad_rate=0.05, resend_rate=0.0, summary_path=None,
                         timeout_s=180, live=False, coder=False)

    summary = await run_closed_loop(settings, options, Console(file=io.StringIO()))

    assert summary["settled"] is True
    assert [name for name, identity in summary["identities"].items() if not identity["holds"]] == []
    assert summary["remittances"] > 0  # the worker and the payer (child processes) got through too


async def test_plain_credentials_create_topics_produce_and_read_back(secure: SecureCluster, tmp_path: Path) -> None:
    settings = secure.settings(tmp_path, "PLAIN")
    report = await apply_topics(settings, load_topics(settings))
    assert report.created and not report.drift
    producer = make_producer(settings, settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(Topic.DEAD_LETTER), b"over SASL_SSL", key=b"k")
    finally:
        await producer.stop()

    records = await read_topic(settings, settings.topic(Topic.DEAD_LETTER))

    assert [r.value for r in records] == [b"over SASL_SSL"]


async def test_a_wrong_password_is_refused_in_one_clear_line(secure: SecureCluster, tmp_path: Path) -> None:
    settings = secure.settings(tmp_path, "SCRAM-SHA-512", password="not-the-password")
    with pytest.raises(ClusterRefused, match="refused user 'alice' \\(SCRAM-SHA-512\\) over SASL_SSL"):
        await check_connection(settings)

    env = {**os.environ, "CLAIMS_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
           "CLAIMS_TOPIC_PREFIX": settings.topic_prefix, "CLAIMS_STATE_DIR": str(settings.state_dir),
           "CLAIMS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CLAIMS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
           "CLAIMS_KAFKA_SASL_USERNAME": "alice", "CLAIMS_KAFKA_SASL_PASSWORD": "not-the-password",
           "CLAIMS_KAFKA_SSL_CA": str(secure.ca_file), "CLAIMS_KAFKA_SSL_CERT": str(secure.client_cert),
           "CLAIMS_KAFKA_SSL_KEY": str(secure.client_key)}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "engine", "topics", "apply"], env=env,
                                   capture_output=True, text=True, timeout=120)

    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "refused user 'alice'" in lines[0], done.stderr
    assert "not-the-password" not in done.stderr + done.stdout  # never echo the secret
