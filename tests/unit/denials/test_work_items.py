"""engine.denials.work_items: appeal deadlines, priority, the action fold, queue views,
accounting, and the corrected / void claims a biller sends."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from engine.denials.work_items import (
    ACTIONABLE,
    DEFAULT_APPEAL_DAYS,
    OPEN_STATUSES,
    RESOLVED,
    TRANSITIONS,
    ClaimCorrections,
    LineCorrection,
    WorkItemState,
    WorkItemStatus,
    appeal_deadline,
    apply_action,
    apply_remittance,
    days_left,
    fold_work_items,
    new_state,
    next_claim_id,
    priority_score,
    queue_overview,
    replacement_claim,
    void_claim,
    work_item_accounting,
    work_list,
)
from engine.model.events import (
    ClaimSubmitted,
    DenialAction,
    DenialActionType,
    DenialWorkItem,
    Remittance,
    RemittanceOutcome,
)
from engine.runtime.stages import ProcessingError
from tests.factories import make_denial_action, make_remittance

A, S = DenialActionType, WorkItemStatus
AT = datetime(2026, 3, 10, 16, 45, 5, 125_000, tzinfo=UTC)
TODAY = date(2026, 3, 20)


def item(work_item_id: str = "DN-1", *, queue: str = "denials.coding", amount: str = "100.00",
         recoverable: bool = True, created: date = date(2026, 3, 10), payer_id: str = "MCR01",
         claim_id: str = "C-1") -> DenialWorkItem:
    return DenialWorkItem(
        work_item_id=work_item_id, claim_id=claim_id, remittance_id=f"R-{work_item_id}", encounter_id="ENC-1",
        payer_id=payer_id, category=queue.removeprefix("denials."), queue=queue, carc="16", group_code="CO",
        all_carcs=["16"], rarcs=["M51"], reasons=["CO-16: missing information"], amount_at_risk=Decimal(amount),
        billed_amount=Decimal(amount), suggested_action="Correct and resubmit.", recoverable=recoverable,
        date_of_service=date(2026, 2, 27), created_at=datetime.combine(created, datetime.min.time(), UTC),
    )


def act(kind: DenialActionType, action_id: str = "ACT-1", *, state: WorkItemState | None = None,
        **fields: object) -> DenialAction:
    defaults: dict[str, object] = {"user": "biller-7", **{
        A.RESUBMIT: {"replacement_claim_id": "C-1R"},
        A.VOID: {"replacement_claim_id": "C-1V"},
        A.WRITE_OFF: {"adjustment_reason": "29"},
        A.APPEAL_DECIDED: {"appeal_overturned": True, "amount": Decimal("80.00")},
    }.get(kind, {})}
    return make_denial_action(kind, action_id=action_id, work_item_id=state.work_item_id if state else "DN-1",
                              claim_id=state.claim_id if state else "C-1", at=AT, **{**defaults, **fields})


def remittance(outcome: RemittanceOutcome, paid: str, *, claim_id: str = "C-1R", remittance_id: str = "R-2",
               ) -> Remittance:
    """MCR01's answer to replacement claim C-1R (of C-1): ``paid`` of 100.00, no lines."""
    return make_remittance(
        [], outcome, remittance_id=remittance_id, claim_id=claim_id, encounter_occurred_at=AT,
        patient_control_number="C-1", payer_id="MCR01", payer_claim_control_number="P-1",
        billed_amount=Decimal("100.00"), allowed_amount=Decimal(paid), paid_amount=Decimal(paid),
        payment_date=date(2026, 4, 1), trace_number="EFT1", adjudicated_at=AT, claim_frequency_code="7",
    )


def in_status(status: WorkItemStatus) -> WorkItemState:
    return dataclasses.replace(new_state(item()), status=status)


# --- deadlines --------------------------------------------------------------------


def test_appeal_deadline_is_creation_date_plus_the_payers_window():
    assert appeal_deadline(item(payer_id="MCR01"), {"MCR01": 120}, 60) == date(2026, 7, 8)
    assert appeal_deadline(item(payer_id="PPO01"), {"MCR01": 120}, 45) == date(2026, 4, 24)
    assert appeal_deadline(item(payer_id="PPO01"), {}) == date(2026, 3, 10) + timedelta(days=DEFAULT_APPEAL_DAYS)


def test_appeal_deadline_uses_the_creation_date_not_the_date_of_service():
    late = item(created=date(2026, 12, 31))
    assert appeal_deadline(late, {"MCR01": 1}, 60) == date(2027, 1, 1)  # across a year end


@pytest.mark.parametrize("today, left", [
    (date(2026, 4, 8), 1), (date(2026, 4, 9), 0), (date(2026, 4, 10), -1), (date(2026, 3, 10), 30),
])
def test_days_left(today, left):
    assert days_left(date(2026, 4, 9), today) == left


# --- priority ---------------------------------------------------------------------


def test_priority_is_amount_times_urgency_in_cents():
    assert priority_score(Decimal("100.00"), 30, True) == Decimal("200.00")
    assert priority_score(Decimal("100.00"), 1, True) == Decimal("3100.00")
    assert priority_score(Decimal("100.00"), 7, True) == Decimal("528.57")
    assert isinstance(priority_score(Decimal("100.00"), 7, True), Decimal)


def test_expired_deadlines_weigh_as_the_last_day():
    last_day = priority_score(Decimal("50.00"), 1, True)
    assert priority_score(Decimal("50.00"), 0, True) == last_day
    assert priority_score(Decimal("50.00"), -40, True) == last_day


def test_non_recoverable_and_empty_items_score_zero():
    assert priority_score(Decimal("5000.00"), 1, False) == Decimal("0.00")
    assert priority_score(Decimal("0.00"), 1, True) == Decimal("0.00")


@given(st.decimals(min_value=1, max_value=10**6, places=2), st.integers(-400, 400), st.integers(0, 400))
def test_more_money_or_fewer_days_never_lowers_the_priority(amount, left, more_days):
    score = priority_score(amount, left, True)
    assert priority_score(amount + 1, left, True) > score
    assert priority_score(amount, left + more_days, True) <= score
    assert score >= amount  # urgency is at least 1


# --- the transition table ---------------------------------------------------------

LEGAL = [
    (S.OPEN, A.CLAIM, S.IN_PROGRESS), (S.REOPENED, A.CLAIM, S.IN_PROGRESS), (S.IN_PROGRESS, A.CLAIM, S.IN_PROGRESS),
    (S.OPEN, A.RESUBMIT, S.RESUBMITTED), (S.IN_PROGRESS, A.RESUBMIT, S.RESUBMITTED),
    (S.REOPENED, A.RESUBMIT, S.RESUBMITTED),
    (S.OPEN, A.VOID, S.VOIDED), (S.IN_PROGRESS, A.VOID, S.VOIDED), (S.REOPENED, A.VOID, S.VOIDED),
    (S.OPEN, A.APPEAL, S.APPEALED), (S.IN_PROGRESS, A.APPEAL, S.APPEALED), (S.REOPENED, A.APPEAL, S.APPEALED),
    (S.APPEALED, A.APPEAL_DECIDED, S.APPEAL_WON),
    (S.OPEN, A.WRITE_OFF, S.WRITTEN_OFF), (S.IN_PROGRESS, A.WRITE_OFF, S.WRITTEN_OFF),
    (S.REOPENED, A.WRITE_OFF, S.WRITTEN_OFF), (S.APPEAL_LOST, A.WRITE_OFF, S.WRITTEN_OFF),
    (S.WRITTEN_OFF, A.REOPEN, S.REOPENED), (S.APPEAL_LOST, A.REOPEN, S.REOPENED), (S.VOIDED, A.REOPEN, S.REOPENED),
    (S.RESUBMITTED, A.RESUBMIT_REJECTED, S.IN_PROGRESS), (S.VOIDED, A.RESUBMIT_REJECTED, S.IN_PROGRESS),
]
LEGAL_PAIRS = {(before, kind) for before, kind, _ in LEGAL}
ILLEGAL = [(status, kind) for status in S for kind in A if (status, kind) not in LEGAL_PAIRS]


def test_the_table_lists_exactly_the_declared_transitions():
    assert LEGAL_PAIRS == {(status, kind) for kind, allowed in TRANSITIONS.items() for status in allowed}


@pytest.mark.parametrize("before, kind, after", LEGAL, ids=[f"{b}-{k}" for b, k, _ in LEGAL])
def test_legal_transition(before, kind, after):
    state = apply_action(in_status(before), act(kind))
    assert state.status == after
    assert state.history == ("ACT-1",)


@pytest.mark.parametrize("before, kind", ILLEGAL, ids=[f"{b}-{k}" for b, k in ILLEGAL])
def test_illegal_transition_raises_naming_ids_and_statuses(before, kind):
    state = in_status(before)
    with pytest.raises(ProcessingError, match=f"{kind} is not allowed on work item DN-1 in status {before}"):
        apply_action(state, act(kind))


def test_error_messages_say_why():
    with pytest.raises(ProcessingError, match="already written off"):
        apply_action(in_status(S.WRITTEN_OFF), act(A.WRITE_OFF))
    with pytest.raises(ProcessingError, match="no appeal is pending"):
        apply_action(in_status(S.OPEN), act(A.APPEAL_DECIDED))
    with pytest.raises(ProcessingError, match="money was recovered"):
        apply_action(in_status(S.RESOLVED_PAID), act(A.REOPEN))
    with pytest.raises(ProcessingError, match="waiting for the payer"):
        apply_action(in_status(S.RESUBMITTED), act(A.CLAIM))


def test_lost_appeal_and_how_money_is_recorded():
    appealed = in_status(S.APPEALED)
    lost = apply_action(appealed, act(A.APPEAL_DECIDED, appeal_overturned=False, amount=None))
    assert (lost.status, lost.recovered_amount) == (S.APPEAL_LOST, Decimal("0.00"))
    won = apply_action(appealed, act(A.APPEAL_DECIDED, amount=Decimal("80")))
    assert (won.status, won.recovered_amount) == (S.APPEAL_WON, Decimal("80.00"))
    written = apply_action(lost, act(A.WRITE_OFF, "ACT-2", amount=Decimal("25.5")))
    assert written.written_off_amount == Decimal("25.50")
    default = apply_action(in_status(S.OPEN), act(A.WRITE_OFF))
    assert default.written_off_amount == Decimal("100.00")  # the item's amount at risk
    reopened = apply_action(written, act(A.REOPEN, "ACT-3"))
    assert (reopened.status, reopened.written_off_amount) == (S.REOPENED, Decimal("0.00"))


@pytest.mark.parametrize("kind, fields, message", [
    (A.RESUBMIT, {"replacement_claim_id": None}, "needs the id of the new claim"),
    (A.RESUBMIT, {"replacement_claim_id": "C-1"}, "needs the id of the new claim"),
    (A.VOID, {"replacement_claim_id": ""}, "needs the id of the new claim"),
    (A.WRITE_OFF, {"adjustment_reason": None}, "needs an adjustment reason"),
    (A.WRITE_OFF, {"amount": Decimal("-1.00")}, "must not be negative"),
])
def test_actions_missing_what_they_need_are_refused(kind, fields, message):
    with pytest.raises(ProcessingError, match=message):
        apply_action(in_status(S.OPEN), act(kind, **fields))


def test_appeal_decision_needs_the_outcome():
    with pytest.raises(ProcessingError, match="appeal_overturned"):
        apply_action(in_status(S.APPEALED), act(A.APPEAL_DECIDED, appeal_overturned=None))


def test_an_action_for_another_item_is_refused():
    with pytest.raises(ProcessingError, match="is for work item DN-9"):
        apply_action(in_status(S.OPEN), dataclasses.replace(act(A.CLAIM), work_item_id="DN-9"))
    with pytest.raises(ProcessingError, match="claim C-9"):
        apply_action(in_status(S.OPEN), dataclasses.replace(act(A.CLAIM), claim_id="C-9"))


def test_claim_assigns_and_working_an_unassigned_item_takes_it():
    state = apply_action(new_state(item()), act(A.CLAIM, user="biller-1"))
    assert state.assignee == "biller-1"
    state = apply_action(state, act(A.CLAIM, "ACT-2", user="biller-2"))
    assert state.assignee == "biller-2"
    assert apply_action(new_state(item()), act(A.APPEAL, user="biller-3")).assignee == "biller-3"
    assert apply_action(state, act(A.APPEAL, "ACT-3", user="biller-3")).assignee == "biller-2"


def test_the_same_action_twice_changes_nothing():
    state = new_state(item())
    for action in [act(A.CLAIM, "a1"), act(A.APPEAL, "a2"), act(A.APPEAL_DECIDED, "a3", appeal_overturned=False),
                   act(A.WRITE_OFF, "a4")]:
        once = apply_action(state, action)
        assert apply_action(once, action) is once  # even though the action is now illegal
        state = once
    assert state.history == ("a1", "a2", "a3", "a4")
    assert state.status == S.WRITTEN_OFF


# --- the replacement claim's remittance -------------------------------------------------


@pytest.fixture
def resubmitted() -> WorkItemState:
    return apply_action(new_state(item()), act(A.RESUBMIT, replacement_claim_id="C-1R"))


@pytest.mark.parametrize("outcome, paid", [(RemittanceOutcome.PAID, "92.40"),
                                           (RemittanceOutcome.PARTIALLY_PAID, "30.00")])
def test_a_paid_replacement_resolves_the_item_with_what_was_paid(resubmitted, outcome, paid):
    state = apply_remittance(resubmitted, remittance(outcome, paid))
    assert (state.status, state.recovered_amount) == (S.RESOLVED_PAID, Decimal(paid))
    assert state.history[-1] == "R-2"
    assert apply_remittance(state, remittance(outcome, paid)) is state  # redelivered


def test_a_denied_replacement_starts_a_new_round(resubmitted):
    state = apply_remittance(resubmitted, remittance(RemittanceOutcome.DENIED, "0.00"))
    assert (state.status, state.round, state.recovered_amount) == (S.OPEN, 2, Decimal("0.00"))
    again = apply_action(state, act(A.RESUBMIT, "ACT-2", replacement_claim_id="C-1R2"))
    paid = apply_remittance(again, remittance(RemittanceOutcome.PAID, "100.00", claim_id="C-1R2",
                                              remittance_id="R-3"))
    assert (paid.status, paid.recovered_amount, paid.round) == (S.RESOLVED_PAID, Decimal("100.00"), 2)


def test_a_denied_replacement_stands_at_the_payer_and_the_next_correction_replaces_it(resubmitted):
    state = apply_remittance(resubmitted, remittance(RemittanceOutcome.PARTIALLY_PAID, "0.00"))
    assert (state.status, state.round) == (S.OPEN, 2)  # paid no more than before: worked again, not "recovered"
    assert state.recovered_amount == Decimal("0.00")
    denied_again = apply_remittance(resubmitted, remittance(RemittanceOutcome.DENIED, "0.00"))
    assert (denied_again.current_claim_id, denied_again.replacement_claim_id) == ("C-1R", None)
    assert resubmitted.current_claim_id == "C-1"


def test_a_replacement_of_a_partly_paid_claim_recovers_only_what_it_pays_beyond_it():
    state = apply_action(new_state(item(), paid_before=Decimal("40.00")), act(A.RESUBMIT))
    paid = apply_remittance(state, remittance(RemittanceOutcome.PAID, "70.00"))
    assert paid.recovered_amount == Decimal("30.00")


def test_a_rejected_replacement_puts_the_item_back_with_the_biller():
    sent = apply_action(new_state(item()), act(A.RESUBMIT, replacement_claim_id="C-1-R1"))
    rejected = apply_action(sent, act(A.RESUBMIT_REJECTED, "ACT-1:RESUBMIT_REJECTED", replacement_claim_id="C-1-R1",
                                      user="engine"))
    assert (rejected.status, rejected.replacement_claim_id, rejected.assignee) == (S.IN_PROGRESS, None, "biller-7")
    assert next_claim_id(rejected, A.RESUBMIT) != next_claim_id(new_state(item()), A.RESUBMIT)
    with pytest.raises(ProcessingError, match="latest is C-1-R1"):
        apply_action(sent, act(A.RESUBMIT_REJECTED, "ACT-9", replacement_claim_id="C-1-R7"))


def test_next_claim_id_is_the_same_for_the_same_state_and_names_the_kind():
    state = new_state(item())
    assert next_claim_id(state, A.RESUBMIT) == next_claim_id(state, A.RESUBMIT) == "C-1-R1"
    assert next_claim_id(state, A.VOID) == "C-1-V1"
    claimed = apply_action(state, act(A.CLAIM))
    assert next_claim_id(claimed, A.RESUBMIT) == "C-1-R2"


def test_the_fold_takes_what_the_denying_remittance_paid_from_the_remittances():
    partial = dataclasses.replace(remittance(RemittanceOutcome.PARTIALLY_PAID, "40.00", claim_id="C-1"),
                                  remittance_id=item().remittance_id, claim_frequency_code="1")
    reversal = remittance(RemittanceOutcome.REVERSED, "-40.00", claim_id="C-1", remittance_id="R-REV")
    paid = remittance(RemittanceOutcome.PAID, "70.00")
    (_, state), = fold_work_items([item()], [act(A.RESUBMIT)], [partial, reversal, paid]).items
    assert (state.status, state.paid_before, state.recovered_amount) == (S.RESOLVED_PAID, Decimal("40.00"),
                                                                         Decimal("30.00"))


def test_the_reversal_of_the_original_changes_nothing(resubmitted):
    reversal = remittance(RemittanceOutcome.REVERSED, "-0.00", claim_id="C-1", remittance_id="R-REV")
    assert apply_remittance(resubmitted, reversal) is resubmitted


@pytest.mark.parametrize("state_status, claim_id", [(S.RESUBMITTED, "C-OTHER"), (S.OPEN, "C-1R"),
                                                    (S.APPEALED, "C-1R")])
def test_a_remittance_that_does_not_answer_the_item_is_refused(state_status, claim_id):
    state = dataclasses.replace(in_status(state_status), replacement_claim_id="C-1R")
    with pytest.raises(ProcessingError, match="does not answer work item DN-1"):
        apply_remittance(state, remittance(RemittanceOutcome.PAID, "10.00", claim_id=claim_id))


# --- queues -------------------------------------------------------------------------------


def test_queue_overview_counts_open_items_their_money_and_the_oldest():
    pairs = [
        (item("DN-1", amount="100.00", created=date(2026, 3, 1)), in_status(S.OPEN)),
        (item("DN-2", amount="50.25", created=date(2026, 2, 1)), in_status(S.APPEALED)),
        (item("DN-3", amount="999.00", created=date(2026, 1, 1)), in_status(S.WRITTEN_OFF)),
        (item("DN-4", queue="denials.eligibility", amount="10.00", created=date(2026, 3, 19)), in_status(S.REOPENED)),
        (item("DN-5", queue="denials.duplicate", amount="10.00"), in_status(S.RESOLVED_PAID)),
    ]
    overview = queue_overview(pairs, TODAY)
    assert list(overview) == ["denials.coding", "denials.duplicate", "denials.eligibility"]
    coding = overview["denials.coding"]
    assert (coding.open_count, coding.actionable_count) == (2, 1)
    assert coding.amount_at_risk == Decimal("150.25")
    assert coding.oldest_open_days == 47  # DN-2; the older DN-3 is closed
    assert overview["denials.eligibility"].oldest_open_days == 1
    duplicate = overview["denials.duplicate"]
    assert (duplicate.open_count, duplicate.amount_at_risk, duplicate.oldest_open_days) == (0, Decimal("0.00"), None)


def test_work_list_orders_by_priority_and_flags_expired_deadlines():
    pairs = [
        # 55 days left: 100 × (1 + 30/55)
        (item("DN-A", amount="100.00", created=date(2026, 3, 15)), in_status(S.OPEN)),
        (item("DN-B", amount="100.00", created=date(2026, 1, 25)), in_status(S.IN_PROGRESS)),  # 6 days left
        (item("DN-C", amount="900.00", created=date(2026, 3, 15)), in_status(S.OPEN)),
        (item("DN-D", amount="5000.00", recoverable=False), in_status(S.OPEN)),
        (item("DN-E", amount="50.00", created=date(2025, 12, 1)), in_status(S.REOPENED)),  # expired: 50 × 31
        (item("DN-F", amount="9999.00"), in_status(S.APPEALED)),  # waiting for the payer
        (item("DN-G", queue="denials.eligibility"), in_status(S.OPEN)),
    ]
    entries = work_list(pairs, "denials.coding", TODAY)
    assert [e.item.work_item_id for e in entries] == ["DN-E", "DN-C", "DN-B", "DN-A", "DN-D"]
    expired = {e.item.work_item_id for e in entries if e.expired}
    assert expired == {"DN-E"}
    assert entries[0].days_left == (date(2026, 1, 30) - TODAY).days
    assert all(e.state.status in ACTIONABLE for e in entries)
    by_deadline = work_list(pairs, "denials.coding", TODAY, sort="deadline")
    assert [e.item.work_item_id for e in by_deadline] == ["DN-E", "DN-B", "DN-D", "DN-C", "DN-A"]
    by_amount = work_list(pairs, "denials.coding", TODAY, sort="amount")
    assert [e.item.work_item_id for e in by_amount] == ["DN-D", "DN-C", "DN-B", "DN-A", "DN-E"]
    by_age = work_list(pairs, "denials.coding", TODAY, sort="age")
    assert [e.item.work_item_id for e in by_age] == ["DN-E", "DN-B", "DN-D", "DN-A", "DN-C"]


def test_work_list_uses_the_payers_window():
    pairs = [(item("DN-1", payer_id="SLOW"), in_status(S.OPEN)), (item("DN-2", payer_id="FAST"), in_status(S.OPEN))]
    entries = work_list(pairs, "denials.coding", TODAY, appeal_days_by_payer={"SLOW": 180, "FAST": 15})
    assert [e.item.work_item_id for e in entries] == ["DN-2", "DN-1"]
    assert entries[0].appeal_deadline == date(2026, 3, 25)
    with pytest.raises(ValueError, match="unknown sort"):
        work_list(pairs, "denials.coding", TODAY, sort="random")


# --- accounting -----------------------------------------------------------------------------


def test_accounting_counts_and_money():
    states = [
        dataclasses.replace(in_status(S.RESOLVED_PAID), recovered_amount=Decimal("90.00")),
        dataclasses.replace(in_status(S.APPEAL_WON), recovered_amount=Decimal("10.50")),
        dataclasses.replace(in_status(S.WRITTEN_OFF), written_off_amount=Decimal("100.00")),
        in_status(S.APPEAL_LOST), in_status(S.VOIDED), in_status(S.OPEN), in_status(S.RESUBMITTED),
    ]
    acct = work_item_accounting(states)
    assert (acct.created, acct.open, acct.resolved, acct.denials_resolved) == (7, 2, 5, 2)
    assert acct.recovered_amount == Decimal("100.50")
    assert acct.written_off_amount == Decimal("100.00")
    assert acct.by_status["VOIDED"] == 1 and sum(acct.by_status.values()) == 7
    assert work_item_accounting([]).recovered_amount == Decimal("0.00")


def test_every_status_is_open_or_resolved_never_both():
    assert OPEN_STATUSES | RESOLVED == set(S)
    assert not OPEN_STATUSES & RESOLVED


def _random_walk(rng: random.Random, n_items: int, steps: int) -> list[WorkItemState]:
    """Random actions and remittances, legal or not, applied as a consumer would:
    refused ones leave the state as it was; some are redelivered."""
    states = [new_state(item(f"DN-{i}", claim_id=f"C-{i}")) for i in range(n_items)]
    seen: list[tuple[int, object]] = []
    for step in range(steps):
        i = rng.randrange(n_items)
        state = states[i]
        if seen and rng.random() < 0.1:
            i, event = rng.choice(seen)  # a redelivery
            state = states[i]
        elif rng.random() < 0.2:
            event = remittance(rng.choice(list(RemittanceOutcome)), str(rng.randint(0, 100)),
                               claim_id=state.replacement_claim_id or f"C-{i}", remittance_id=f"R-{step}")
        else:
            kind = rng.choice(list(A))
            event = act(kind, f"A-{step}", state=state, replacement_claim_id=f"C-{i}-{step}",
                        appeal_overturned=rng.random() < 0.5, amount=Decimal(rng.randint(0, 10_000)) / 100)
        seen.append((i, event))
        try:
            before = states[i]
            if isinstance(event, Remittance):
                states[i] = apply_remittance(before, event)
            else:
                states[i] = apply_action(before, event)
        except ProcessingError:
            assert states[i] is before
    return states


@pytest.mark.parametrize("seed", range(20))
def test_accounting_identity_holds_over_random_action_sequences(seed):
    states = _random_walk(random.Random(seed), n_items=15, steps=400)
    acct = work_item_accounting(states)
    assert acct.open + acct.resolved == acct.created == 15
    assert acct.denials_resolved <= acct.resolved
    assert acct.recovered_amount == sum((s.recovered_amount for s in states), Decimal("0.00"))
    assert all(s.recovered_amount == 0 for s in states if s.status not in {S.RESOLVED_PAID, S.APPEAL_WON})
    assert all(s.written_off_amount == 0 for s in states if s.status != S.WRITTEN_OFF)
    assert len({s.status for s in states}) > 3  # the walk reaches many statuses


@hyp_settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_replaying_the_applied_events_rebuilds_the_same_state(seed):
    """The fold is deterministic: a replay from the start gives the same state."""
    states = _random_walk(random.Random(seed), n_items=3, steps=60)
    acct = work_item_accounting(states)
    assert acct.open + acct.resolved == acct.created
    again = _random_walk(random.Random(seed), n_items=3, steps=60)
    assert again == states


# --- corrected and void claims ----------------------------------------------------------------


@pytest.fixture
def original(samples) -> ClaimSubmitted:
    return samples[ClaimSubmitted]  # 99214-25 × 1 at 210.00, J3301 × 4 at 88.00


LATER = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)


def _assert_successor(new: ClaimSubmitted, original: ClaimSubmitted, frequency: str) -> None:
    assert (new.frequency_code, new.original_claim_id, new.claim_id) == (frequency, original.claim_id, "C-NEW")
    for name in ("patient_id", "payer_id", "member_id", "patient_control_number", "encounter_id", "billing_npi",
                 "rendering_npi", "date_of_service", "subscriber", "payer_name", "patient_last_name"):
        assert getattr(new, name) == getattr(original, name), name
    assert new.submitted_at == LATER
    assert new.total_charge == sum((ln.charge for ln in new.lines), Decimal("0.00"))


def test_replacement_applies_line_and_diagnosis_corrections(original):
    corrections = ClaimCorrections(
        lines=(LineCorrection(1, modifiers=()), LineCorrection(2, units=2, dx_pointers=(2,))),
        diagnoses=("E11.65", "I10"),
    )
    new = replacement_claim(original, corrections, "C-NEW", LATER)
    _assert_successor(new, original, "7")
    assert new.diagnoses == ["E11.65", "I10"]
    assert [(ln.procedure_code, ln.modifiers, ln.units, ln.charge, ln.dx_pointers) for ln in new.lines] == [
        ("99214", [], 1, Decimal("210.00"), [1, 2]), ("J3301", [], 2, Decimal("44.00"), [2])]
    assert new.total_charge == Decimal("254.00")
    assert original.lines[0].modifiers == ["25"] and original.frequency_code == "1"  # untouched


def test_replacement_with_a_new_code_prices_it(original):
    class Fees:
        def charge(self, code: str, units: int) -> Decimal:
            return Decimal("150.00") * units

    fix = ClaimCorrections(lines=(LineCorrection(1, procedure_code="99213"),))
    assert replacement_claim(original, fix, "C-NEW", LATER, fees=Fees()).lines[0].charge == Decimal("150.00")
    priced = ClaimCorrections(lines=(LineCorrection(1, procedure_code="99213", charge=Decimal("140")),))
    assert replacement_claim(original, priced, "C-NEW", LATER).lines[0].charge == Decimal("140.00")
    with pytest.raises(ProcessingError, match="new procedure code needs a charge"):
        replacement_claim(original, fix, "C-NEW", LATER)


def test_replacement_can_drop_a_line(original):
    new = replacement_claim(original, ClaimCorrections(remove_lines=frozenset({2})), "C-NEW", LATER)
    assert [ln.line_number for ln in new.lines] == [1]
    assert new.total_charge == Decimal("210.00")


@pytest.mark.parametrize("corrections, message", [
    (ClaimCorrections(lines=(LineCorrection(9, units=2),)), "has no line 9"),
    (ClaimCorrections(remove_lines=frozenset({1, 2})), "would have no lines"),
    (ClaimCorrections(diagnoses=("E11.9",)), "points past the diagnoses"),
    (ClaimCorrections(lines=(LineCorrection(1, units=0),)), "units must be at least 1"),
])
def test_bad_corrections_are_refused(original, corrections, message):
    with pytest.raises(ProcessingError, match=message):
        replacement_claim(original, corrections, "C-NEW", LATER)


def test_void_keeps_the_content_and_names_the_original(original):
    new = void_claim(original, "C-NEW", LATER)
    _assert_successor(new, original, "8")
    assert new.lines == original.lines and new.lines is not original.lines
    assert new.total_charge == original.total_charge


def test_voids_and_reused_ids_are_refused(original):
    void = void_claim(original, "C-NEW", LATER)
    with pytest.raises(ProcessingError, match="already a void"):
        void_claim(void, "C-NEW2", LATER)
    with pytest.raises(ProcessingError, match="cannot be replaced"):
        replacement_claim(void, ClaimCorrections(), "C-NEW2", LATER)
    with pytest.raises(ProcessingError, match="needs its own id"):
        replacement_claim(original, ClaimCorrections(), original.claim_id, LATER)


def test_the_scrubber_and_837_accept_the_new_claims(original):
    """Frequency 7/8 with the original named (REF*F8): the scrubber and 837 writer agree."""
    from engine.claims.scrubber import frequency
    from engine.x12.claim_837_write import claim_problems

    for new in (replacement_claim(original, ClaimCorrections(), "C-NEW", LATER), void_claim(original, "C-NEW", LATER)):
        assert list(frequency(new, None)) == []
        assert not [p for p in claim_problems(new) if "frequency" in p]


# --- the event on the wire -----------------------------------------------------------------------


def test_denial_action_schema_is_registered_and_mirrors_the_dataclass(settings):
    index = json.loads((settings.schemas_dir / "registry.json").read_text())["schemas"]
    entry = max((e for e in index if e["name"] == DenialAction.SCHEMA), key=lambda e: e["version"])
    raw = json.loads((settings.schemas_dir / entry["file"]).read_text())
    assert f'{raw["namespace"]}.{raw["name"]}' == DenialAction.SCHEMA
    assert [f["name"] for f in raw["fields"]] == [f.name for f in dataclasses.fields(DenialAction)]
    (action_field,) = [f for f in raw["fields"] if f["name"] == "action"]
    assert action_field["type"]["name"] == DenialActionType.__name__
    assert action_field["type"]["symbols"] == [k.value for k in DenialActionType]
    optional = [f for f in raw["fields"] if isinstance(f["type"], list)]
    assert all(f["default"] is None for f in optional)
    (amount,) = [f for f in raw["fields"] if f["name"] == "amount"]
    assert amount["type"][1] == {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}


@pytest.mark.parametrize("action", [
    act(A.WRITE_OFF, note="timely filing proof not found", amount=Decimal("123.45")),
    act(A.APPEAL_DECIDED, appeal_overturned=False, amount=None),
    act(A.RESUBMIT),
    act(A.CLAIM),
], ids=["write-off", "appeal-lost", "resubmit", "claim"])
def test_denial_action_round_trips_through_the_codec(codec, action):
    data = codec.encode(action)
    assert data[1:5] == codec.registry.latest[DenialAction.SCHEMA].schema_id.to_bytes(4, "big")
    decoded = codec.decode(data, DenialAction)
    assert decoded == action
    assert type(decoded.action) is DenialActionType
    assert decoded.amount is None or isinstance(decoded.amount, Decimal)


def test_the_payer_simulator_reverses_the_original_and_pays_the_replacement(book, codec, original):
    """End to end: a paid original, a biller's replacement (frequency 7) and void
    (frequency 8); the payer finds the original by its id (no CARC 129), and the
    replacement's own payment resolves the work item."""
    from simulators.coverage import Coverage
    from simulators.payer.adjudication import Calibration, MemberState, PayerReference, adjudicate

    claim = dataclasses.replace(original, payer_id="MCR01", member_id="M1", submitted_at=LATER - timedelta(days=30))
    ref = PayerReference(book, {"M1": Coverage("M1", "MCR01", "MCR01-SILVER", "18", None, date(2020, 1, 1), None)},
                         {}, {"99214": Decimal("200.00"), "J3301": Decimal("10.00")}, 1)
    state, quiet = MemberState(), Calibration(claims=10_000, denied=10_000)  # no stochastic denials
    adjudicate(claim, state, ref, quiet, codec, LATER)
    replacement = replacement_claim(claim, ClaimCorrections(lines=(LineCorrection(2, units=2),)), "C-NEW", LATER)
    reversal, own = adjudicate(replacement, state, ref, quiet, codec, LATER).remittances
    assert (reversal.claim_id, reversal.outcome) == (claim.claim_id, RemittanceOutcome.REVERSED)
    assert own.claim_id == "C-NEW" and own.claim_frequency_code == "7"
    assert own.outcome in (RemittanceOutcome.PAID, RemittanceOutcome.PARTIALLY_PAID)
    assert "129" not in {a.carc for a in own.all_adjustments()}

    work = new_state(item(claim_id=claim.claim_id))
    work = apply_action(work, act(A.RESUBMIT, state=work, replacement_claim_id="C-NEW"))
    work = apply_remittance(apply_remittance(work, reversal), own)
    assert (work.status, work.recovered_amount) == (S.RESOLVED_PAID, own.paid_amount)

    void = void_claim(replacement, "C-VOID", LATER + timedelta(days=1))
    (taken_back,) = adjudicate(void, state, ref, quiet, codec, LATER).remittances
    assert (taken_back.claim_id, taken_back.outcome, taken_back.claim_frequency_code) == (
        "C-NEW", RemittanceOutcome.REVERSED, "8")


# --- the fold over the topics ----------------------------------------------------------


def test_the_fold_makes_one_item_per_id_applies_actions_in_order_and_records_refusals():
    routed_twice = [item("DN-1"), item("DN-1"), item("DN-2", claim_id="C-2")]
    actions = [act(A.CLAIM, "ACT-1"), act(A.WRITE_OFF, "ACT-2"), act(A.WRITE_OFF, "ACT-3"),
               dataclasses.replace(act(A.CLAIM, "ACT-4"), work_item_id="DN-9")]
    folded = fold_work_items(routed_twice, actions, [])
    states = {i.work_item_id: s for i, s in folded.items}
    assert len(folded.items) == 2
    assert states["DN-1"].status == S.WRITTEN_OFF and states["DN-1"].history == ("ACT-1", "ACT-2")
    assert states["DN-2"].status == S.OPEN
    assert [(a.action_id, "written off" in why or "DN-9" in why) for a, why in folded.refused] == [
        ("ACT-3", True), ("ACT-4", True)]


def test_the_fold_answers_a_resubmission_with_its_replacements_remittances_whatever_their_order():
    paid = remittance(RemittanceOutcome.PAID, "70.00")
    reversal = dataclasses.replace(remittance(RemittanceOutcome.REVERSED, "-10.00", claim_id="C-1R",
                                              remittance_id="R-REV"))
    folded = fold_work_items([item()], [act(A.RESUBMIT)], [reversal, paid])
    (_, state), = folded.items
    assert state.status == S.RESOLVED_PAID and state.recovered_amount == Decimal("70.00")
    assert work_item_accounting([state]).denials_resolved == 1


def test_a_replacement_denied_at_claim_level_leaves_the_original_standing():
    """The payer reverses nothing then: the next correction names the original again."""
    denied = remittance(RemittanceOutcome.DENIED, "0.00")
    (_, state), = fold_work_items([item()], [act(A.RESUBMIT)], [denied]).items
    assert (state.status, state.round, state.current_claim_id) == (S.OPEN, 2, "C-1")


def test_an_action_is_folded_against_the_answers_that_came_before_it():
    """A write-off sent while the replacement was out is refused, even when the payer's
    later denial is already on the topic when the queues are read."""
    sent = act(A.RESUBMIT)
    write_off = act(A.WRITE_OFF, "ACT-2")  # at AT, the replacement's answer comes later
    later = dataclasses.replace(remittance(RemittanceOutcome.DENIED, "0.00"), adjudicated_at=AT + timedelta(hours=1))
    folded = fold_work_items([item()], [sent, write_off], [later])
    (_, state), = folded.items
    assert state.status == S.OPEN and [a.action_id for a, _ in folded.refused] == ["ACT-2"]
