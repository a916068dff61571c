"""How the payer's member table holds a member: the member's record (``payer|member``:
accumulators, the window's year, payments pending) and, beside it, one entry per claim
adjudicated, with two small indexes to find one by the payer's claim control number and by
fingerprint (exact duplicates). Each claim is written once when it is answered (and again
if it is reversed), so a member's record no longer grows with every claim the member had
and is no longer rewritten whole, claims and all, per claim.

Every entry's key starts with its member's key and ``#``: the table puts it in its
member's partition (``engine.runtime.faust_app.GroupedStringTable``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field

from engine.model.codes import ORIGINAL
from engine.model.events import ClaimSubmitted
from engine.runtime.faust_app import ENTRY_SEPARATOR
from engine.wire import state as state_codec
from simulators.payer.adjudication import (
    AdjudicatedClaim,
    MemberState,
    fingerprint,
    payer_claim_control_number,
)

CLAIM, CONTROL_NUMBER, FINGERPRINT = "c:", "n:", "f:"


def entry_key(member: str, kind: str, ref: str) -> str:
    return f"{member}{ENTRY_SEPARATOR}{kind}{ref}"


def is_member_key(key: str) -> bool:
    return ENTRY_SEPARATOR not in key


@dataclass
class ClaimEntry:
    """A claim's entry: the claim as adjudicated, the member record's write (``seq``) it
    belongs to, and the write that reversed it (0: none). A reversed claim keeps what it had,
    so that a reversal whose member record never landed can be undone on reading."""

    claim: AdjudicatedClaim
    seq: int
    reversed_seq: int = 0

    def as_of(self, seq: int) -> AdjudicatedClaim | None:
        """The claim as the member's record of write ``seq`` knows it (None: not yet)."""
        if self.seq > seq:
            return None
        claim = dataclasses.replace(self.claim)  # the adjudication may reverse it; the entry stays as read
        if self.reversed_seq and self.reversed_seq <= seq:
            claim.reverse()
        return claim


@dataclass
class MemberView:
    """A member's record with the claims one claim's adjudication may need, as read."""

    member: str
    state: MemberState
    claims: dict[str, AdjudicatedClaim] = field(default_factory=dict)
    entries: dict[str, ClaimEntry] = field(default_factory=dict)


def load(table: MutableMapping[str, str], member: str, claim: ClaimSubmitted) -> MemberView:
    """The member's record, with the claims ``claim`` may touch put in ``state.claims``: its
    own (a redelivery), its original (a replacement or void, by claim id or control
    number) and those with its fingerprint (a duplicate), each as the record knows it."""
    state = MemberState.loads(table.get(member))
    view = MemberView(member, state, dict(state.claims))  # a record written with its claims inside
    refs = [claim.claim_id]
    if claim.frequency_code != ORIGINAL and claim.original_claim_id:
        refs.append(claim.original_claim_id)
        by_number = table.get(entry_key(member, CONTROL_NUMBER, claim.original_claim_id))
        if by_number:
            refs.append(by_number)
    refs.extend(_split(table.get(entry_key(member, FINGERPRINT, fingerprint(claim)))))
    for claim_id in refs:
        if claim_id in view.claims:
            continue
        raw = table.get(entry_key(member, CLAIM, claim_id))
        entry = state_codec.loads(ClaimEntry, raw) if raw else None
        known = entry.as_of(state.seq) if entry else None
        if entry is not None and known is not None:
            view.claims[claim_id], view.entries[claim_id] = known, entry
    state.claims = dict(view.claims)
    return view


def store(table: MutableMapping[str, str], view: MemberView) -> None:
    """Write back what the adjudication changed: a new claim's entry and indexes, the
    reversal of an existing one, and last the member's record without its claims. The writes
    land in this order (one partition), so a kill leaves entries of a write whose record never
    landed: ``ClaimEntry.as_of`` reads past them, and the claim read again decides the same."""
    member, state = view.member, view.state
    seq = state.seq + 1
    seen = {**view.claims, **state.claims}  # the window may have dropped some from the state
    for claim_id, claim in seen.items():
        entry = view.entries.get(claim_id)
        if entry is None:  # new here (or moved out of a record that held its claims)
            table[entry_key(member, CONTROL_NUMBER, payer_claim_control_number(claim_id))] = claim_id
            if claim.fingerprint:
                key = entry_key(member, FINGERPRINT, claim.fingerprint)
                ids = _split(table.get(key))
                if claim_id not in ids:
                    table[key] = ",".join([*ids, claim_id])
            table[entry_key(member, CLAIM, claim_id)] = state_codec.dumps(ClaimEntry(claim, seq))
        else:
            reversed_now = claim.reversed and not (entry.claim.reversed or 0 < entry.reversed_seq <= state.seq)
            upgraded = claim.plan_year != entry.claim.plan_year  # ``upgrade``: state from before the window
            if reversed_now:
                entry.reversed_seq = seq
            if upgraded:
                entry.claim.plan_year = claim.plan_year
            if reversed_now or upgraded:
                table[entry_key(member, CLAIM, claim_id)] = state_codec.dumps(entry)
    state.claims = {}
    state.seq = seq
    table[member] = state.dumps()


def member_claims(table: MutableMapping[str, str], member: str) -> dict[str, AdjudicatedClaim]:
    """Every claim of a member as its record knows it (a scan: for tests and tools, not the
    stage)."""
    seq = MemberState.loads(table.get(member)).seq
    prefix = entry_key(member, CLAIM, "")
    claims = {}
    for key, raw in table.items():
        if key.startswith(prefix):
            known = state_codec.loads(ClaimEntry, raw).as_of(seq)
            if known is not None:
                claims[key[len(prefix):]] = known
    return claims


def member_records(table: MutableMapping[str, str]) -> Iterator[tuple[str, str]]:
    """The members' own records, without the entries beside them."""
    return ((key, raw) for key, raw in table.items() if is_member_key(key))


def _split(ids: str | None) -> list[str]:
    return ids.split(",") if ids else []
