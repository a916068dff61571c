"""Property tests: the EHR simulator and the coding rules agree, for any seed and bad rate.

The simulator promises that a GOOD encounter passes every rule and that each coding
error kind is caught by its ``EXPECTED_RULE``; the rules promise the same from their
side. Hypothesis explores seeds, bad rates and the day the plan is made for
(derandomized, no example database: the same examples on every run).
"""

from __future__ import annotations

from datetime import date

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.coding.rules import check_encounter
from engine.model.events import Encounter, Severity
from simulators.ehr import CODING_ERROR_KINDS, EXPECTED_RULE, UNREADABLE_KINDS, Kind, plan_encounters

DETERMINISTIC = settings(derandomize=True, database=None, deadline=None, max_examples=100)

seeds = st.integers(min_value=0, max_value=2**31 - 1)
bad_rates = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
# Any day in four years: leap days, year ends, birthdays on 29 February.
days = st.dates(min_value=date(2025, 1, 1), max_value=date(2028, 12, 31))


def errors_of(enc: Encounter, ref) -> list[str]:
    return [f.rule_id for f in check_encounter(enc, ref) if f.severity == Severity.ERROR]


@DETERMINISTIC
@given(seed=seeds, bad_rate=bad_rates, today=days)
@example(seed=1, bad_rate=0.0, today=date(2028, 2, 29))
def test_every_good_encounter_passes_every_rule(codec, book, coding_ref, seed, bad_rate, today):
    plan = plan_encounters(80, seed, bad_rate, 0.1, codec, book, today=today)
    for record in plan:
        if record.kind in (Kind.GOOD, Kind.RESEND):
            enc = codec.decode(record.value, Encounter)
            assert errors_of(enc, coding_ref) == [], (record.kind, enc.encounter_id, enc.diagnoses)


@DETERMINISTIC
@given(seed=seeds, bad_rate=bad_rates, today=days)
@example(seed=1, bad_rate=1.0, today=date(2028, 2, 29))
def test_every_coding_error_is_caught_by_its_expected_rule(codec, book, coding_ref, seed, bad_rate, today):
    plan = plan_encounters(80, seed, bad_rate, 0.0, codec, book, today=today)
    for record in plan:
        if record.kind in CODING_ERROR_KINDS:
            enc = codec.decode(record.value, Encounter)
            assert EXPECTED_RULE[record.kind] in errors_of(enc, coding_ref), (record.kind, enc)
        else:
            assert record.kind in (Kind.GOOD, *UNREADABLE_KINDS)


@settings(DETERMINISTIC, max_examples=30)
@given(seed=seeds, today=days)
def test_at_bad_rate_1_every_kind_appears_and_is_caught(codec, book, coding_ref, seed, today):
    """Enough encounters for every bad kind twice: none is skipped, each caught."""
    n = 2 * (len(CODING_ERROR_KINDS) + len(UNREADABLE_KINDS))
    plan = plan_encounters(n, seed, 1.0, 0.0, codec, book, today=today)
    assert {r.kind for r in plan} == {*CODING_ERROR_KINDS, *UNREADABLE_KINDS}
    for record in plan:
        if record.kind in CODING_ERROR_KINDS:
            assert EXPECTED_RULE[record.kind] in errors_of(codec.decode(record.value, Encounter), coding_ref)
