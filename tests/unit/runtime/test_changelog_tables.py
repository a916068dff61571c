"""The exactly-once worker's tables: entries by their key's changelog partition (as a
Kafka producer partitions the key), journalled writes turned into the changelog records of
their source message, and a restore's records read back into entries."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from engine.runtime.changelog_tables import ChangelogTable, changelog_records
from engine.runtime.staged_state import StagedTable, StateJournal
from engine.runtime.stages import SourceMessage


@given(st.text(min_size=1, max_size=40))
def test_an_entry_is_in_the_changelog_partition_a_producer_puts_its_key_in(key: str) -> None:
    table = ChangelogTable("app-claims_by_encounter-changelog", 8)
    partitions = list(range(8))
    assert table.partition_of(key) == DefaultPartitioner()(key.encode(), partitions, partitions)


def _message(offset: int) -> SourceMessage:
    return SourceMessage("coded", 0, offset, b"E1", b"")


def test_a_batch_writes_become_changelog_records_of_their_message_in_order() -> None:
    table = ChangelogTable("app-claims_by_encounter-changelog", 8)
    table["E0"] = "kept"
    staged = StagedTable(table)
    first, second = _message(1), _message(2)
    with StateJournal.opened() as journal:
        journal.begin(first)
        staged["E1"] = "C1"
        staged["E1"] = "C1|parked"
        journal.begin(second)
        del staged["E0"]
        records = changelog_records(journal)
        assert table["E0"] == "kept"  # nothing reaches the store before the transaction committed
        journal.apply(lambda message: message is first)
    assert [(r.key, r.value, r.tombstone) for r in records[id(first)]] == [(b"E1", b"C1", False),
                                                                          (b"E1", b"C1|parked", False)]
    assert [(r.key, r.payload) for r in records[id(second)]] == [(b"E0", None)]
    assert dict(table) == {"E0": "kept", "E1": "C1|parked"}  # the second message's deletion was not committed


def test_restored_records_replay_writes_and_deletions_and_a_partition_dropped_goes() -> None:
    table = ChangelogTable("app-claim_ledger-changelog", 8)
    table.load(b"C1", b"posted")
    table.load(b"C2", b"open")
    table.load(b"C1", None)  # a tombstone
    assert dict(table) == {"C2": "open"}
    table.drop({table.partition_of("C2")})
    assert dict(table) == {}
