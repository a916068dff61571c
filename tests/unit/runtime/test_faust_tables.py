"""engine.runtime.faust_app's tables: where a grouped table puts its entries. A payer
member's claims are entries of their own, and must sit in the member's changelog partition,
the partition of the member's records on the topic the payer reads, or a payer that took the
member's partition over would restore the member without its claims."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from aiokafka.partitioner import DefaultPartitioner

from engine.runtime.faust_app import TABLE_PARTITIONS, GroupedStringTable, make_faust_app, make_worker, string_table
from engine.settings import Settings
from simulators.payer import member_store


def test_a_grouped_tables_entries_sit_in_the_partition_of_their_group(tmp_path: Path) -> None:
    app = make_faust_app(replace(Settings(), state_dir=tmp_path), "tables", "127.0.0.1:9")
    table = string_table(app, "payer_members", GroupedStringTable)
    partitions = list(range(TABLE_PARTITIONS))
    members = [f"PPO01|PPO{n:09}" for n in range(40)]
    for member in members:
        on_topic = DefaultPartitioner()(member.encode(), partitions, partitions)  # how the intake keys it
        kinds = [(member_store.CLAIM, "CLM-1"), (member_store.CONTROL_NUMBER, "P0A1"), (member_store.FINGERPRINT, "ab")]
        entries = [member_store.entry_key(member, kind, ref) for kind, ref in kinds]
        assert {table.partition_for_key(key) for key in [member, *entries]} == {on_topic}
    spread = {table.partition_for_key(member) for member in members}
    assert len(spread) > 1  # partitioned by member, not all in one place


def test_the_worker_leaves_the_root_logger_at_the_configured_level(tmp_path: Path) -> None:
    """faust's start-up spinner set the root logger to DEBUG with a handler for every record:
    each debug line of aiokafka and faust (one per record sent) was built and handled, 7 %
    of the worker's CPU under load."""
    settings = replace(Settings(), state_dir=tmp_path, log_level="WARNING")
    worker = make_worker(make_faust_app(settings, "logs", "127.0.0.1:9"), settings)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        root.handlers = [logging.NullHandler()]
        worker.on_setup_root_logger(root, logging.WARNING)  # what mode calls once it configured logging
        assert root.level == logging.WARNING
        assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
        assert [type(h) for h in root.handlers] == [logging.NullHandler]
    finally:
        root.setLevel(level)
        root.handlers = handlers
