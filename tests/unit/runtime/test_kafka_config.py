"""How the loopback Kafka is configured and how every client connects: broker settings by
cluster size, the listener's TLS/SASL properties, the clients' security options."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.runtime.kafka import client_options, connection_environment
from engine.runtime.kafka_cluster import (
    BROKER_SETTINGS,
    KafkaCluster,
    KafkaNode,
    ListenerSecurity,
    broker_settings,
    kafka_version,
)
from engine.settings import Settings


def test_the_kafka_version_comes_from_the_pom() -> None:
    assert kafka_version().startswith("4.0.")


@pytest.mark.parametrize(("nodes", "rf", "isr"), [(1, "1", "1"), (3, "3", "2")])
def test_broker_settings_follow_the_cluster_size(nodes: int, rf: str, isr: str) -> None:
    settings = broker_settings(nodes)
    assert settings.keys() == BROKER_SETTINGS.keys()
    assert settings["offsets.topic.replication.factor"] == rf
    assert settings["min.insync.replicas"] == isr
    assert settings["auto.create.topics.enable"] == "false"


def test_a_plaintext_node_is_kraft_combined_with_every_voter(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path, nodes=3,
                           members=[KafkaNode(i, 9000 + i, 9100 + i, tmp_path / f"node-{i}") for i in (1, 2, 3)])
    props = cluster.node_properties(cluster.members[1])

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    assert props["min.insync.replicas"] == "2"


def test_a_sasl_ssl_listener_knows_its_users_and_certificates(tmp_path: Path) -> None:
    for name in ("ca.pem", "broker.key", "broker.pem"):
        (tmp_path / name).write_text(f"-----BEGIN X-----\n{name}\n-----END X-----\n")
    security = ListenerSecurity("SASL_SSL", ca_file=tmp_path / "ca.pem", key_file=tmp_path / "broker.key",
                                cert_file=tmp_path / "broker.pem", users={"admin": "a-pw", "alice": "b-pw"})

    props = security.broker_properties()

    assert props["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-512"
    assert 'user_alice="b-pw"' in props["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert "ScramLoginModule" in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    keystore = Path(props["ssl.keystore.location"]).read_text()
    assert "broker.key" in keystore and "broker.pem" in keystore
    assert security.scram_arguments() == ["--add-scram", "SCRAM-SHA-512=[name=admin,password=a-pw]",
                                          "--add-scram", "SCRAM-SHA-512=[name=alice,password=b-pw]"]


def test_clients_get_sasl_and_tls_from_the_settings() -> None:
    settings = replace(Settings(), security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                       sasl_username="alice", sasl_password="pw")
    assert client_options(settings) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                        "sasl_plain_username": "alice", "sasl_plain_password": "pw"}
    assert client_options(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert connection_environment(settings)["CLAIMS_KAFKA_SASL_USERNAME"] == "alice"


def test_the_password_stays_out_of_the_settings_repr() -> None:
    assert "hunter2" not in repr(replace(Settings(), sasl_password="hunter2"))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("broker", "redpanda", "CLAIMS_BROKER='redpanda'"),
    ("security_protocol", "TLS", "CLAIMS_KAFKA_SECURITY_PROTOCOL='TLS'"),
    ("sasl_mechanism", "GSSAPI", "CLAIMS_KAFKA_SASL_MECHANISM='GSSAPI'"),
    ("idempotence", "maybe", "CLAIMS_IDEMPOTENCE='maybe'"),
])
def test_a_setting_out_of_its_choices_is_named(field: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(Settings(), **{field: value})


def test_the_coder_simulators_group_is_its_apps_own_unless_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLAIMS_CODER_GROUP_ID", raising=False)
    assert replace(Settings(), app_id="claimflow-t1").coder_group_id == "claimflow-t1-coder-simulator"
    monkeypatch.setenv("CLAIMS_CODER_GROUP_ID", "coders")
    assert replace(Settings(), app_id="claimflow-t1").coder_group_id == "coders"


async def test_a_client_whose_start_fails_is_closed_all_the_same() -> None:
    """aiokafka leaves a producer whose start raised open (and warns when it is collected, an
    error under filterwarnings): ``started`` stops it. Nothing listens on the port."""
    import socket

    from aiokafka.errors import KafkaConnectionError

    from engine.runtime.kafka import make_producer, started

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = replace(Settings(), bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=1000)
    producer = make_producer(settings, settings.bootstrap_servers)
    with pytest.raises(KafkaConnectionError):
        async with started(producer):
            pytest.fail("the start did not fail")
    assert producer._closed is True


def test_exactly_once_is_refused_where_the_broker_refuses_idempotent_producers() -> None:
    from engine.runtime.transactions import exactly_once_settings

    with pytest.raises(RuntimeError, match="refuses idempotent producers"):
        exactly_once_settings(replace(Settings(), idempotence="off"))
    assert exactly_once_settings(replace(Settings(), idempotence="auto")).idempotence == "on"
    with pytest.raises(ValueError, match="CLAIMS_PROCESSING_GUARANTEE='twice'"):
        replace(Settings(), processing_guarantee="twice")
