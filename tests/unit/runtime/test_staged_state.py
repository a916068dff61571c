"""engine.runtime.staged_state: a stage's table writes reach the table only once the
outputs of the message that made them are delivered; a failed message leaves no state."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from engine.model.events import Encounter
from engine.runtime.delivery import OutputLimits, deliver_result
from engine.runtime.staged_state import StagedTable, StateJournal
from engine.runtime.stages import DEAD_LETTER_TOPIC, Emit, ProcessingError, SourceMessage, run_stage
from engine.wire.topics import Topic

NOW = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
LIMITS = OutputLimits({Topic.CODED: 1 << 20, DEAD_LETTER_TOPIC: 1 << 20})


def message(offset: int, value: bytes = b"v") -> SourceMessage:
    return SourceMessage("t.encounters", 0, offset, f"K{offset}".encode(), value)


def test_a_write_is_seen_by_the_batch_and_reaches_the_table_once_applied() -> None:
    table: dict[str, str] = {"old": "1"}
    staged = StagedTable(table)
    first, second = message(1), message(2)
    with StateJournal.opened() as journal:
        journal.begin(first)
        staged["E1"] = "C1"
        del staged["old"]
        journal.begin(second)
        assert staged.get("E1") == "C1" and "old" not in staged  # the rest of the batch sees them
        assert sorted(staged) == ["E1"] and len(staged) == 1
        assert table == {"old": "1"}  # the table does not, yet
        assert journal.apply(lambda m: True) == 2
    assert table == {"E1": "C1"}


def test_only_the_messages_whose_outputs_were_delivered_leave_state() -> None:
    table: dict[str, str] = {}
    staged = StagedTable(table)
    delivered, lettered = message(1), message(2)
    with StateJournal.opened() as journal:
        for m in (delivered, lettered):
            journal.begin(m)
            staged[m.key.decode()] = "taken"  # type: ignore[union-attr]
        journal.apply(lambda m: m is delivered)
    assert table == {"K1": "taken"}


def test_a_journal_not_applied_leaves_nothing_and_writes_outside_one_go_straight_through() -> None:
    table: dict[str, str] = {}
    staged = StagedTable(table)
    with StateJournal.opened() as journal:
        journal.begin(message(1))
        staged["E1"] = "C1"
    assert table == {} and StateJournal.current() is None  # a shutdown mid-delivery: dropped
    staged["E2"] = "C2"  # a timer, a test: no journal open
    assert table == {"E2": "C2"}


def test_a_message_its_handler_fails_on_leaves_no_state(codec, make_encounter) -> None:
    table: dict[str, str] = {}
    staged = StagedTable(table)

    def handler(enc: Encounter, m: SourceMessage) -> Iterable[Emit]:
        staged[enc.encounter_id] = "taken"
        if enc.encounter_id == "ENC-BAD":
            raise ProcessingError("no fee for the code")
        return [Emit(Topic.CODED, enc.encounter_id, enc)]

    messages = [message(i, codec.encode(make_encounter(encounter_id=e))) for i, e in enumerate(["ENC-OK", "ENC-BAD"])]
    with StateJournal.opened() as journal:
        result = run_stage("coding", messages, codec, Encounter, handler, now=lambda: NOW)
        assert [len(emits) for _, emits in result.outputs] == [1, 1] and len(result.dead_letters) == 1
        assert "ENC-BAD" not in staged and staged["ENC-OK"] == "taken"
        journal.apply(lambda m: True)
    assert table == {"ENC-OK": "taken"}


class FakeBroker:
    """A send that refuses the records whose key is in ``refuse`` for good, and times out
    the first attempt of those in ``flaky`` (then takes them)."""

    def __init__(self, refuse: set[bytes] = frozenset(), flaky: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        self.refuse, self.flaky, self.taken = refuse, set(flaky), []  # type: ignore[var-annotated]

    async def send(self, topic: str, key: bytes, value: bytes,
                   headers: object = ()) -> asyncio.Future[object]:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if key in self.refuse and not topic.endswith(DEAD_LETTER_TOPIC):
            future.set_exception(MessageSizeTooLargeError())
        elif key in self.flaky:
            self.flaky.discard(key)
            future.set_exception(KafkaTimeoutError())
        else:
            self.taken.append((topic, key))
            future.set_result(None)
        return future


@pytest.mark.parametrize("why", ["refused", "too large"])
async def test_a_message_whose_outputs_were_dead_lettered_instead_leaves_no_state(codec, make_encounter,
                                                                                   why: str) -> None:
    table: dict[str, str] = {}
    staged = StagedTable(table)
    broker = FakeBroker(refuse={b"ENC-2"} if why == "refused" else set(), flaky={b"ENC-3"})
    notes = {"ENC-2": "n" * (50_000 if why == "too large" else 1)}
    limits = OutputLimits({Topic.CODED: 20_000, DEAD_LETTER_TOPIC: 1 << 20})

    def handler(enc: Encounter, m: SourceMessage) -> Iterable[Emit]:
        staged[enc.encounter_id] = "taken"
        return [Emit(Topic.CODED, enc.encounter_id, enc)]

    messages = [message(i, codec.encode(make_encounter(encounter_id=e, clinical_note=notes.get(e, "ok"))))
                for i, e in enumerate(["ENC-1", "ENC-2", "ENC-3"])]
    with StateJournal.opened() as journal:
        result = run_stage("coding", messages, codec, Encounter, handler, now=lambda: NOW)
        delivered = await deliver_result(broker.send, "coding", result, codec, limits, str, lambda: NOW)
        journal.apply(delivered)
    assert [delivered(m) for m in messages] == [True, False, True]
    assert table == {"ENC-1": "taken", "ENC-3": "taken"}  # ENC-3 was retried, then taken
    assert ("dead-letter", b"t.encounters:0:1") in broker.taken
