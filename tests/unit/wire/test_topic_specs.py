"""topics.yaml as specs: replication that follows the cluster, environment overrides, and
the configs `claims topics apply` sets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.settings import Settings
from engine.wire.topics import load_topics, max_message_bytes

TOPICS_YAML = """
defaults: {partitions: 8, replication_factor: auto, min_insync_replicas: auto, retention: 7d, cleanup: delete,
           max_message_bytes: 1048576}
environments:
  production:
    defaults: {replication_factor: 3, min_insync_replicas: 2}
    topics:
      remittances: {retention: 400d, max_message_bytes: 4194304}
topics:
  - {name: encounters, schema: org.claimflow.events.Encounter}
  - {name: remittances, schema: org.claimflow.events.Remittance}
"""


@pytest.fixture
def topics_file(tmp_path: Path) -> Path:
    path = tmp_path / "topics.yaml"
    path.write_text(TOPICS_YAML)
    return path


def settings_for(topics_file: Path, **overrides: object) -> Settings:
    return replace(Settings(), topics_file=topics_file, topic_prefix="p.", **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(("brokers", "replicas", "in_sync"), [(1, 1, 1), (2, 2, 1), (3, 3, 2), (5, 3, 2)])
def test_auto_replication_follows_the_cluster(topics_file: Path, brokers: int, replicas: int, in_sync: int) -> None:
    spec = load_topics(settings_for(topics_file))["encounters"]
    assert spec.replication_factor is None and spec.min_insync_replicas is None

    resolved = spec.for_cluster(brokers)

    assert (resolved.replication_factor, resolved.min_insync_replicas) == (replicas, in_sync)
    assert resolved.configs["min.insync.replicas"] == str(in_sync)
    assert resolved.configs["max.message.bytes"] == "1048576"


def test_an_environment_overrides_defaults_and_single_topics(topics_file: Path) -> None:
    specs = load_topics(settings_for(topics_file, topics_env="production"))

    assert specs["encounters"].replication_factor == 3 and specs["encounters"].min_insync_replicas == 2
    assert specs["encounters"].retention_ms == 7 * 86_400_000
    assert specs["remittances"].retention_ms == 400 * 86_400_000
    assert max_message_bytes(specs) == 4_194_304


def test_an_unknown_environment_is_named(topics_file: Path) -> None:
    with pytest.raises(ValueError, match="CLAIMS_TOPICS_ENV='staging': topics.yaml declares production"):
        load_topics(settings_for(topics_file, topics_env="staging"))


def test_the_replication_setting_wins_over_the_file(topics_file: Path) -> None:
    spec = load_topics(settings_for(topics_file, replication_factor=2))["encounters"]
    assert spec.for_cluster(3).replication_factor == 2
    assert spec.for_cluster(3).min_insync_replicas == 1


def test_the_shipped_topics_file_resolves_on_one_node_and_three() -> None:
    specs = load_topics(Settings())
    assert {s.for_cluster(1).replication_factor for s in specs.values()} == {1}
    assert {s.for_cluster(3).min_insync_replicas for s in specs.values()} == {2}
    assert Settings().max_request_bytes == max_message_bytes(specs)
