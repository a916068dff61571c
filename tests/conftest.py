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
