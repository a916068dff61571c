"""simulators.payer.adjudication: the member state stays bounded. A member keeps the
accumulators and claims of a plan-year window (``PLAN_YEARS_KEPT``), and of each claim
only what duplicates, replacements and voids need; state written before the window
still loads and goes on.

A member here is MCR01's M1 (deductible 283, coinsurance 20 %, timely filing 365 days),
seen for a two-line visit (99214 + 36415) every day or so over three plan years.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from engine.model.events import ClaimSubmitted, GroupCode, Remittance, RemittanceOutcome
from simulators.coverage import Coverage
from simulators.payer import adjudication as payer
from simulators.payer.adjudication import (
    Accumulator,
    Adjudication,
    Calibration,
    MemberState,
    PayerBook,
    PayerReference,
    adjudicate,
    fingerprint,
    payer_claim_control_number,
    reversal_of,
)
from tests import factories

ZERO = Decimal("0.00")
YEARS = (2024, 2025, 2026)
FIRST, LAST = date(2024, 1, 1), date(2026, 12, 31)
FEES = {"99214": Decimal("1000.00"), "36415": Decimal("20.00")}  # MCR01 allows 420.00 and 8.40
#: What one claim of the window may cost in the serialized state (measured: 367 bytes for
#: this two-line visit; 490 when the state kept the whole remittance).
BYTES_PER_CLAIM = 420


def reference(book: PayerBook) -> PayerReference:
    member = Coverage("M1", "MCR01", "MCR01-SILVER", "18", None, date(2020, 1, 1), None)
    return PayerReference(book, {"M1": member}, {}, FEES, 1)


def quiet() -> Calibration:
    """A calibration far ahead of every target: the stochastic draw never denies."""
    return Calibration(claims=10_000, denied=10_000)


def at(day: date, days_later: int = 2) -> datetime:
    return datetime.combine(day + timedelta(days=days_later), time(9), tzinfo=UTC)


def visit(claim_id: str, dos: date, submitted: datetime | None = None, **kw: Any) -> ClaimSubmitted:
    """The member's two-line visit on ``dos``, sent two days later unless told."""
    return factories.make_claim(claim_id, [("99214", "500.00"), ("36415", "18.00")], date_of_service=dos,
                                submitted_at=submitted or at(dos), **kw)


def history(n: int) -> list[ClaimSubmitted]:
    """``n`` visits spread evenly over the three plan years, in date order."""
    span = (LAST - FIRST).days
    return [visit(f"C{i:05d}", FIRST + timedelta(days=i * span // (n - 1))) for i in range(n)]


def run(claims: list[ClaimSubmitted], book: PayerBook, codec: Any,
        state: MemberState | None = None) -> tuple[MemberState, list[Adjudication]]:
    """Adjudicate in order, reading the state back from its JSON before each claim, as the
    faust table does."""
    state = state or MemberState()
    ref, cal, results = reference(book), quiet(), []
    for claim in claims:
        state = MemberState.loads(state.dumps())
        results.append(adjudicate(claim, state, ref, cal, codec, claim.submitted_at))
    return state, results


@pytest.fixture(scope="module")
def member(book, codec) -> tuple[list[ClaimSubmitted], MemberState, list[Adjudication]]:
    claims = history(1000)
    state, results = run(claims, book, codec)
    return claims, state, results


def test_the_window_keeps_this_plan_year_and_the_previous_one(member):
    claims, state, _ = member
    assert payer.PLAN_YEARS_KEPT == 2
    assert set(state.accumulators) == {2025, 2026}
    kept = {c.claim_id for c in claims if c.date_of_service.year >= 2025}
    assert set(state.claims) == kept and len(kept) > 600
    assert {c.plan_year for c in state.claims.values()} == {2025, 2026}


def test_a_member_s_state_is_bounded_by_the_window_not_by_the_claims_ever_seen(member, book, codec):
    claims, state, _ = member
    size = len(state.dumps().encode())
    assert size <= BYTES_PER_CLAIM * len(state.claims) + 500
    # Whatever came before the window, the state is the one of the window's claims alone.
    alone, _ = run([c for c in claims if c.date_of_service.year >= 2025], book, codec)
    assert state.dumps() == alone.dumps()


def test_the_state_written_per_claim_never_grows_past_the_window(book, codec):
    """Each claim rewrites the state to the changelog: the largest write stays that of
    two plan years, however long the member has been seen."""
    state, ref, cal = MemberState(), reference(book), quiet()
    largest_by_year: dict[int, int] = {}
    for claim in history(600):
        adjudicate(claim, state, ref, cal, codec, claim.submitted_at)
        year = claim.date_of_service.year
        largest_by_year[year] = max(largest_by_year.get(year, 0), len(state.dumps()))
    assert largest_by_year[2026] <= largest_by_year[2025] * 1.1  # 2024 has left as 2026 came in


def test_a_redelivered_recent_claim_is_still_recognised(member, book, codec):
    claims, state, _ = member
    state = MemberState.loads(state.dumps())
    before = state.dumps()
    for claim in (claims[-1], claims[-400]):  # this plan year and the previous one
        assert adjudicate(claim, state, reference(book), quiet(), codec, claim.submitted_at) == Adjudication(
            [], None, False)
    assert state.dumps() == before


def test_an_exact_duplicate_of_a_recent_claim_is_still_oa_18(member, book, codec):
    claims, state, _ = member
    state = MemberState.loads(state.dumps())
    recent = claims[-400]
    duplicate = visit("DUP1", recent.date_of_service, submitted=at(recent.date_of_service, 5))
    (remit,) = adjudicate(duplicate, state, reference(book), quiet(), codec, duplicate.submitted_at).remittances
    assert (remit.outcome, remit.rarcs) == (RemittanceOutcome.DENIED, ["M86"])
    assert {a.carc for a in remit.all_adjustments()} == {"18"}


def answers(claims: list[ClaimSubmitted], results: list[Adjudication]) -> dict[str, Remittance]:
    return {remit.claim_id: remit for result in results for remit in result.remittances}


@pytest.mark.parametrize("index, by_control_number", [(-1, False), (-400, True)],
                         ids=["this-plan-year", "previous-plan-year-by-control-number"])
def test_a_replacement_of_a_recent_claim_reverses_the_answer_as_it_was_sent(member, book, codec, index,
                                                                            by_control_number):
    claims, state, results = member
    state = MemberState.loads(state.dumps())
    original = answers(claims, results)[claims[index].claim_id]
    year = original.date_of_service.year
    accumulator = Accumulator(state.accumulators[year].deductible_met, state.accumulators[year].oop_met)
    ref = payer_claim_control_number(original.claim_id) if by_control_number else original.claim_id
    replacement = factories.make_claim("R1", [("99214", "500.00")], date_of_service=original.date_of_service,
                                       submitted_at=at(original.date_of_service, 20), frequency_code="7",
                                       original_claim_id=ref)
    now = replacement.submitted_at + timedelta(seconds=1)
    reversal, own = adjudicate(replacement, state, reference(book), quiet(), codec, now).remittances
    # The very reversal the whole remittance would give: ids, encounter, lines, CAS, names.
    assert reversal == reversal_of(original, replacement, own.payment_date, now)
    assert (own.claim_id, own.claim_status_code) == ("R1", "1")
    # The reversal gave the original's share back; the replacement took its own.
    original_pr = original.patient_responsibility
    assert state.accumulators[year].oop_met == accumulator.oop_met - original_pr + own.patient_responsibility
    assert state.claims[original.claim_id].reversed
    # A reversed claim keeps no remittance and no fingerprint: it is never reversed again nor duplicated.
    assert (state.claims[original.claim_id].remittance, state.claims[original.claim_id].fingerprint) == (b"", "")


def test_a_void_of_a_recent_claim_gives_the_accumulators_back(member, book, codec):
    claims, state, results = member
    state = MemberState.loads(state.dumps())
    original = answers(claims, results)[claims[-1].claim_id]
    oop = state.accumulators[2026].oop_met
    void = visit("V1", original.date_of_service, submitted=at(LAST, 3), frequency_code="8",
                 original_claim_id=original.claim_id)
    (reversal,) = adjudicate(void, state, reference(book), quiet(), codec, void.submitted_at).remittances
    assert (reversal.claim_id, reversal.claim_status_code, reversal.paid_amount) == (
        original.claim_id, "22", -original.paid_amount)
    assert state.accumulators[2026].oop_met == oop - original.patient_responsibility
    assert state.claims["V1"].reversed and state.claims["V1"].remittance == b""


def test_the_current_plan_year_s_accumulators_are_the_sum_of_its_patient_shares(member):
    claims, state, results = member
    for year in (2025, 2026):
        shares = [a for claim, result in zip(claims, results, strict=True) if claim.date_of_service.year == year
                  for remit in result.remittances for a in remit.all_adjustments() if a.group_code == GroupCode.PR]
        assert state.accumulators[year] == Accumulator(
            sum((a.amount for a in shares if a.carc == "1"), ZERO), sum((a.amount for a in shares), ZERO))
        assert state.accumulators[year].deductible_met == Decimal("283.00")  # met on the year's first visit


def test_a_late_claim_of_a_year_the_window_dropped_is_past_timely_filing(member, book, codec):
    """Every payer files within a year, so a claim for a plan year the window has dropped is
    past its timely-filing limit: the existing rule denies it (29), and the state does not
    grow back."""
    assert all(p.timely_filing_days <= 365 * (payer.PLAN_YEARS_KEPT - 1) for p in book.payers.values())
    claims, state, _ = member
    state = MemberState.loads(state.dumps())
    before = set(state.claims)
    late = visit("LATE1", date(2024, 12, 31), submitted=at(LAST, 3))
    (remit,) = adjudicate(late, state, reference(book), quiet(), codec, late.submitted_at).remittances
    assert (remit.outcome, {a.carc for a in remit.all_adjustments()}) == (RemittanceOutcome.DENIED, {"29"})
    assert set(state.claims) == before and set(state.accumulators) == {2025, 2026}


def test_a_late_claim_of_a_dropped_year_within_its_own_filing_limit_is_treated_as_new(book, codec):
    """A claim whose own dates pass timely filing (sent on time, delivered late) is priced as
    the first of its plan year — the payer no longer holds that year — and is not kept."""
    state, _ = run([visit("C1", date(2026, 5, 4)), visit("C2", date(2027, 2, 1))], book, codec)
    assert set(state.accumulators) == {2026, 2027}
    old = visit("OLD1", date(2025, 3, 2))  # sent on 2025-03-04
    (remit,) = adjudicate(old, state, reference(book), quiet(), codec, old.submitted_at).remittances
    assert remit.outcome == RemittanceOutcome.PAID and remit.patient_responsibility > Decimal("283.00")
    assert set(state.claims) == {"C1", "C2"} and set(state.accumulators) == {2026, 2027}


def test_a_date_of_service_after_the_claim_was_sent_does_not_move_the_window(book, codec):
    """A bad date (a visit in 2031, sent in 2026) must not push the window on and make the
    payer forget the member's real plan years."""
    state, _ = run([visit("C1", date(2025, 5, 4)), visit("C2", date(2026, 2, 1)),
                    visit("BAD", date(2031, 1, 1), submitted=at(date(2026, 2, 5)))], book, codec)
    assert {"C1", "C2"} <= set(state.claims) and {2025, 2026} <= set(state.accumulators)


# --- state written before the window ---------------------------------------------------------


def old_record(codec: Any, book: PayerBook) -> tuple[str, Remittance, Remittance]:
    """A member state as the payer wrote it before the window: each claim with its whole
    remittance, no plan year, no window reference; one claim of 2023, one of 2026. Plus a
    key no version ever wrote, which a reader must ignore."""
    claims = [visit("OLD23", date(2023, 6, 1)), visit("OLD26", date(2026, 3, 2))]
    states = [run([claim], book, codec) for claim in claims]
    old23, old26 = (results[0].remittances[0] for _, results in states)
    doc = {
        "accumulators": {year: {"deductible_met": str(a.deductible_met), "oop_met": str(a.oop_met)}
                         for state, _ in states for year, a in state.accumulators.items()},
        "claims": {c.claim_id: {"claim_id": c.claim_id, "fingerprint": fingerprint(c), "frequency_code": "1",
                                "remittance": base64.b64encode(codec.encode(r)).decode(), "reversed": False}
                   for c, r in zip(claims, (old23, old26), strict=True)},
        "pending": [{"due_at": 1_772_000_000.5, "remittance": base64.b64encode(codec.encode(old26)).decode()}],
        "written_by": "a later version",
    }
    return json.dumps(doc, separators=(",", ":")), old23, old26


def test_state_written_before_the_window_loads(codec, book):
    raw, _, old26 = old_record(codec, book)
    state = MemberState.loads(raw)
    assert set(state.claims) == {"OLD23", "OLD26"} and set(state.accumulators) == {2023, 2026}
    assert state.claims["OLD26"].plan_year == 0  # not written then: learnt from the remittance when next adjudicated
    assert codec.decode(state.pending[0].remittance, Remittance) == old26
    assert MemberState.loads(state.dumps()) == state


def test_state_written_before_the_window_goes_on_and_is_trimmed(codec, book):
    raw, _, old26 = old_record(codec, book)
    state = MemberState.loads(raw)
    replacement = visit("OLD26R", date(2026, 3, 2), submitted=at(date(2026, 3, 2), 20), frequency_code="7",
                        original_claim_id="OLD26")
    now = datetime(2026, 3, 22, 9, 0, 1, tzinfo=UTC)
    reversal, own = adjudicate(replacement, state, reference(book), quiet(), codec, now).remittances
    assert reversal == reversal_of(old26, replacement, own.payment_date, now)
    # The old claims learnt their plan year; 2023 is outside the window and gone.
    assert set(state.claims) == {"OLD26", "OLD26R"} and set(state.accumulators) == {2026}
    assert state.claims["OLD26"].plan_year == 2026 and state.claims["OLD26"].remittance == b""
    assert state.accumulators[2026].oop_met == own.patient_responsibility
    assert len(state.pending) == 1  # a payment still due is kept whatever its plan year
