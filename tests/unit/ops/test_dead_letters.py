"""engine.ops.dead_letters: letters picked by stage, reason or id, grouped for the list,
and an original checked against its digest before it is replayed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from engine.ops.dead_letters import Letter, ReplayError, by_stage_and_reason, matching, original_of
from engine.runtime.stages import SourceMessage, dead_letter

NOW = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


def letter(stage: str, error: Exception, offset: int, value: bytes = b"\x00garbage") -> Letter:
    message = SourceMessage("t.coded", 1, 40 + offset, b"ENC-%d" % offset, value)
    return Letter(0, offset, dead_letter(stage, message, error, NOW).event)


LETTERS = [
    letter("claims", ValueError("procedure 99215 has no charge in the fee schedule"), 1),
    letter("claims", ValueError("procedure 99215 has no charge in the fee schedule"), 2),
    letter("coding", TypeError("not Avro"), 3),
]


def test_letters_are_picked_by_stage_reason_or_id() -> None:
    assert [x.offset for x in matching(LETTERS, stage="claims")] == [1, 2]
    assert [x.offset for x in matching(LETTERS, reason="FEE SCHEDULE")] == [1, 2]
    assert [x.offset for x in matching(LETTERS, reason="typeerror")] == [3]  # the error type matches too
    assert [x.offset for x in matching(LETTERS, ids=["0:2"])] == [2]
    assert matching(LETTERS, stage="coding", reason="fee") == []


def test_the_list_groups_by_stage_and_reason_most_frequent_first() -> None:
    assert by_stage_and_reason(LETTERS) == [
        ("claims", "ValueError", "procedure 99215 has no charge in the fee schedule", 2),
        ("coding", "TypeError", "not Avro", 1),
    ]


async def test_an_original_that_does_not_match_its_digest_is_not_replayed(settings) -> None:
    kept = LETTERS[0].letter
    assert await original_of(settings, kept) == b"\x00garbage"
    with pytest.raises(ReplayError, match="digest"):
        await original_of(settings, dataclasses.replace(kept, original_value=b"\x00altered"))
