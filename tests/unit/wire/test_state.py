"""``engine.wire.state``: one codec for every table value — the ledger, the denied claim's
memory and the payer's member state round-trip, and state written before a field existed
still reads."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from engine.denials.actions import DeniedClaimState, ItemMemory
from engine.denials.work_items import WorkItemStatus
from engine.model.events import ClaimState
from engine.posting.ledger import Ledger
from engine.wire import state
from simulators.payer.adjudication import Accumulator, AdjudicatedClaim, MemberState, PendingPayment


def test_a_ledger_round_trips_with_its_money_as_decimal_strings():
    ledger = Ledger("C1", "E1", "PPO01", Decimal("298.00"), ClaimState.PARTIALLY_PAID, paid=Decimal("120.10"),
                    remittance_ids=["R1", "R2"], action_ids=["DA-1"])
    raw = ledger.dumps()
    assert json.loads(raw)["paid"] == "120.10" and json.loads(raw)["status"] == "PARTIALLY_PAID"
    again = Ledger.loads(raw)
    assert again == ledger and isinstance(again.paid, Decimal) and again.status is ClaimState.PARTIALLY_PAID


def test_the_denied_claim_memory_round_trips_its_items():
    memory = DeniedClaimState(handled=["DA-1"], sent=["C1R1"],
                              items={"DN-1": ItemMemory(WorkItemStatus.APPEALED, "biller-7", None, "DA-2", "12.00")})
    assert DeniedClaimState.loads(memory.dumps()) == memory
    assert DeniedClaimState.loads(None) == DeniedClaimState() == DeniedClaimState.loads("")


def test_the_member_state_round_trips_years_bytes_and_floats():
    member = MemberState(accumulators={2026: Accumulator(Decimal("283.00"), Decimal("400.00"))},
                         claims={"C1": AdjudicatedClaim("C1", "fp", "1", b"\x00\x01\xff", reversed=True)},
                         pending=[PendingPayment(1_764_000_000.25, b"\x00remit")])
    again = MemberState.loads(member.dumps())
    assert again == member
    assert list(again.accumulators) == [2026] and again.claims["C1"].remittance == b"\x00\x01\xff"


@dataclass
class _Before(state.StateRecord):
    claim_id: str = ""


@dataclass
class _After(state.StateRecord):
    claim_id: str = ""
    seen: list[str] = field(default_factory=list)
    amount: Decimal | None = None


def test_state_written_before_a_field_was_added_reads_with_its_default():
    old = _Before("C9").dumps()
    assert _After.loads(old) == _After("C9", [], None)


def test_a_type_the_codec_does_not_know_is_refused():
    @dataclass
    class Odd(state.StateRecord):
        where: complex = 0j

    with pytest.raises(TypeError, match="no state codec"):
        Odd.loads('{"where": 1}')
