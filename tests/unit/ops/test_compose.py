"""docker-compose.yml, checked where it cannot be run (no Docker engine here): the brokers
match the loopback cluster and the pom, every command is a real `claims` subcommand with flags
that exist, every CLAIMS_ variable is one the settings read, Prometheus scrapes a service that
serves /metrics."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
import yaml

from engine.cli.app import app
from engine.runtime.kafka_cluster import BROKER_SETTINGS, broker_settings, kafka_version
from engine.settings import PROJECT_ROOT

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
KAFKA = {name: service for name, service in SERVICES.items()
         if str(service.get("image", "")).startswith("apache/kafka")}
#: Subcommands whose process serves /metrics (the web page with the ops routes).
SERVES_METRICS = {("web",)}


def broker_properties(environment: dict[str, object]) -> dict[str, str]:
    """The apache/kafka image's mapping: KAFKA_FOO_BAR → foo.bar (``__`` → ``_``, ``___`` → ``-``)."""
    properties = {}
    for key, value in environment.items():
        if key.startswith("KAFKA_"):
            name = key.removeprefix("KAFKA_").lower().replace("___", "-").replace("__", "\0").replace("_", ".")
            properties[name.replace("\0", "_")] = str(value)
    return properties


def settings_variables() -> set[str]:
    """Every CLAIMS_ variable engine/settings.py reads (the first argument of its _env calls)."""
    tree = ast.parse((PROJECT_ROOT / "engine" / "settings.py").read_text())
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("_env")
            and node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("CLAIMS_")}


def claims_commands() -> Iterator[tuple[str, list[str]]]:
    for name, service in SERVICES.items():
        if "build" in service:  # our image: its entrypoint is `claims`
            yield name, [str(part) for part in service["command"]]


def test_three_kraft_nodes_on_the_pom_version() -> None:
    assert len(KAFKA) == 3
    assert {service["image"] for service in KAFKA.values()} == {f"apache/kafka:{kafka_version()}"}
    assert len({service["environment"]["CLUSTER_ID"] for service in KAFKA.values()}) == 1
    assert sorted(str(s["environment"]["KAFKA_NODE_ID"]) for s in KAFKA.values()) == ["1", "2", "3"]


@pytest.mark.parametrize("node", sorted(KAFKA))
def test_each_node_has_the_loopback_clusters_settings(node: str) -> None:
    properties = broker_properties(KAFKA[node]["environment"])
    want = broker_settings(3)

    assert {key: properties.get(key) for key in BROKER_SETTINGS} == want
    assert properties["process.roles"] == "broker,controller"
    voters = properties["controller.quorum.voters"].split(",")
    assert sorted(v.split("@")[0] for v in voters) == ["1", "2", "3"]


@pytest.mark.parametrize(("service", "command"), list(claims_commands()))
def test_every_service_runs_a_real_claims_command(service: str, command: list[str]) -> None:
    group: Any = typer.main.get_command(app)  # typer vendors its own click: groups have .commands
    words = list(command)
    while words and hasattr(group, "commands") and not words[0].startswith("-"):
        subcommand = group.commands.get(words[0])
        assert subcommand is not None, f"{service}: `claims {' '.join(command)}`: no subcommand {words[0]!r}"
        group, words = subcommand, words[1:]
    assert not hasattr(group, "commands"), f"{service}: `claims {' '.join(command)}` names a group"
    options = {opt for param in group.params for opt in getattr(param, "opts", [])}
    flags = [word.split("=")[0] for word in words if word.startswith("--")]
    assert [flag for flag in flags if flag not in options] == [], f"{service}: unknown flags"


def test_every_claims_variable_is_read_by_the_settings() -> None:
    known = settings_variables()
    used = {key for service in SERVICES.values() for key in (service.get("environment") or {})
            if key.startswith("CLAIMS_")}
    assert used, "the services configure themselves through CLAIMS_ variables"
    assert sorted(used - known) == []


def test_prometheus_scrapes_the_service_that_serves_metrics() -> None:
    config = yaml.safe_load(COMPOSE["configs"]["prometheus"]["content"])
    targets = [target for job in config["scrape_configs"] for static in job["static_configs"]
               for target in static["targets"]]
    assert targets
    for target in targets:
        host, _, port = target.partition(":")
        assert host in SERVICES, target
        command = tuple(str(part) for part in SERVICES[host]["command"])
        assert command in SERVES_METRICS, f"{host} runs `claims {' '.join(command)}`, which serves no /metrics"
        assert str(SERVICES[host]["environment"]["CLAIMS_WEB_PORT"]) == port
        assert str(SERVICES[host]["environment"]["CLAIMS_WEB_HOST"]) == "0.0.0.0"
