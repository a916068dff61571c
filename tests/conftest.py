"""Shared fixtures, registered as plugins so every test package sees them, and the check
that the integration marker is where the broker is: on every test under tests/integration,
on no other."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.factories", "tests.fixtures.worker"]

INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"


@pytest.hookimpl(tryfirst=True)  # before -m deselects: an unmarked test must not slip into a unit run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        integration = INTEGRATION_DIR in Path(item.path).resolve().parents
        marked = item.get_closest_marker("integration") is not None
        if integration and not marked:
            problems.append(f"{item.nodeid}: under tests/integration but not marked integration "
                            "(give its module `pytestmark = pytest.mark.integration`)")
        elif marked and not integration:
            problems.append(f"{item.nodeid}: marked integration but not under tests/integration "
                            "(a test that needs the broker goes there; a unit test drops the marker)")
    if problems:
        raise pytest.UsageError("the integration marker is misplaced:\n  " + "\n  ".join(problems))
    for item in items:
        group = broker_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


#: The runs with many processes and kills (a worker pair, payer, coder, EHR; three JVMs): one
#: after the other in one process, never two at once on the two cores (in CI the Kafka crash
#: run, beside the three-node cluster's, did not settle in 420 s; alone it takes ~75 s).
FAULT_MODULES = frozenset({"test_crashes", "test_kafka_cluster"})


def broker_group(item: pytest.Item) -> str | None:
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``), the tests of one broker stay in one
    worker process, so each process starts only the brokers its tests use: the Tansu half, the
    one-node Kafka half, and the modules that start clusters of their own."""
    if INTEGRATION_DIR not in Path(item.path).resolve().parents:
        return None
    if Path(item.path).stem in FAULT_MODULES:
        return "faults"
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "backend" in callspec.params:
        return str(callspec.params["backend"])
    return f"own-brokers:{Path(item.path).stem}"
