"""Shared fixtures, registered as plugins so every test package sees them."""

pytest_plugins = ["tests.fixtures.kafka"]
