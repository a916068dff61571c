"""Fuzz every stage's input topic: the engine's worker stages (``engine.worker.stages.STAGES``)
and the payer simulator's (``simulators.payer.app.PAYER_STAGES``).

Each example is a batch: the stage's valid events and one to four fuzzed records (random
bytes, truncated or bit-flipped events, wrong or foreign schema ids, wrong-typed or missing
fields, absurd values — see ``mutations.py``), shuffled, with random keys. Then:

- the stage does not raise, and every source message is in ``result.outputs``, in order;
- each fuzzed message ends as its source's dead letter — reason, error type, coordinates,
  bytes — or as what the stage legitimately makes of it (a work item with its findings, a
  verdict with its note, an event the next stage judges);
- each valid message gets exactly the outputs it gets alone on a fresh context, and the
  tables hold exactly what they hold then for its keys;
- ``fit_outputs`` (the runtime's step before producing) takes the whole result without
  raising: an output it cannot encode would stall the stage on the batch for good.

A dead letter from the stage's catch-all (an error other than ``UndecodableEvent``,
``ProcessingError`` or the runtime's ``OutputNotEncodable``) is a bug found. The bugs this
suite found are pinned down by the tests at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.claims.build import claim_id_for
from engine.claims.stage import TakenOn
from engine.coding.findings import FINDINGS_LISTED, has_errors
from engine.coding.rules import review_item_id
from engine.denials.work_items import ClaimCorrections, replacement_claim
from engine.model.events import (
    Address,
    ClaimState,
    ClaimSubmitted,
    CodedEncounter,
    CodedLine,
    CodingAction,
    CodingActionType,
    CodingReviewItem,
    DeadLetter,
    DenialAction,
    DenialActionType,
    DenialWorkItem,
    EligibilityRequest,
    EligibilityResponse,
    EligibilityStatus,
    Encounter,
    FrontDeskItem,
    GroupCode,
    Procedure,
    Remittance,
    RemittanceOutcome,
    ScrubRejected,
)
from engine.posting.ledger import Ledger
from engine.runtime.delivery import OutputLimits, fit_outputs
from engine.runtime.stages import (
    DEAD_LETTER_KEEP_BYTES,
    DEAD_LETTER_KEY_BYTES,
    Emit,
    SourceMessage,
    Stage,
    StageResult,
)
from engine.wire.codec import Codec, to_record
from engine.wire.topics import Table, Topic
from engine.worker.stages import STAGES, WorkerContext
from simulators.coverage import Coverage, PatientRecord, write_master_data
from simulators.payer.adjudication import Calibration
from simulators.payer.app import PAYER_STAGES, PayerRuntime
from tests import factories
from tests.factories import NOW, make_adjustment, make_coded_encounter, make_encounter, make_remittance_line
from tests.unit.fuzz import mutations as mut
from tests.unit.fuzz.cases import count, fuzz

#: The errors a stage dead-letters on purpose; any other reached its catch-all: a bug.
EXPECTED_ERRORS = frozenset({"UndecodableEvent", "ProcessingError"})


# --- running a batch -------------------------------------------------------------------------


@contextmanager
def frozen_clock() -> Iterator[None]:
    """``Stage.run`` reads the batch's time from ``engine.runtime.stages.utcnow``: fixed, so
    two runs of a batch are comparable."""
    with mock.patch("engine.runtime.stages.utcnow", return_value=NOW):
        yield


def run(stage: Stage[Any], context: Any, codec: Codec, messages: Sequence[SourceMessage]) -> StageResult:
    with frozen_clock():
        return stage.run(context, codec, messages)


def fit(stage: Stage[Any], result: StageResult, codec: Codec, settings: Any) -> list[list[Any]]:
    """What the runtime would produce: must not raise (a raise leaves the batch unacknowledged:
    it is read again, raises again — the stage stalls on it)."""
    return fit_outputs(stage.name, result, codec, OutputLimits.of(settings), settings.topic, lambda: NOW)


def dead_letter_of(stage: str, message: SourceMessage, emits: list[Emit]) -> DeadLetter | None:
    """The message's dead letter, checked, when that is what it became."""
    letters = [e for e in emits if e.topic == Topic.DEAD_LETTER]
    if not letters:
        return None
    assert len(emits) == 1, f"a dead letter comes alone, got {[e.topic for e in emits]}"
    (emit,) = letters
    letter = emit.event
    assert isinstance(letter, DeadLetter)
    assert emit.key == f"{message.topic}:{message.partition}:{message.offset}"
    assert (letter.stage, letter.source_topic, letter.source_partition, letter.source_offset) == (
        stage, message.topic, message.partition, message.offset)
    assert letter.source_key == (message.key[:DEAD_LETTER_KEY_BYTES] if message.key is not None else None)
    value = message.value if message.value is not None else b""
    assert letter.original_value == value[:DEAD_LETTER_KEEP_BYTES]
    assert (letter.original_size, letter.original_truncated) == (len(value), len(value) > DEAD_LETTER_KEEP_BYTES)
    assert letter.original_sha256 == hashlib.sha256(value).hexdigest()
    assert letter.reason.strip() and len(letter.reason) <= 1000
    assert letter.error_type in EXPECTED_ERRORS, (
        f"{stage} reached its catch-all: {letter.error_type}: {letter.reason}")
    return letter


Judge = Callable[[SourceMessage, list[Emit], Any], None]


@dataclass
class World:
    """One stage with what it needs: a fresh context with the state its valid events
    expect, those events, the fuzzed records for its topic, and what it may make of them."""

    stage: Stage[Any]
    context: Callable[[], Any]
    valid: list[tuple[bytes, bytes]]  # (key, value)
    fuzzed: st.SearchStrategy[bytes | None]
    judge: Judge
    tables: Callable[[Any], Mapping[str, Mapping[str, str]]]

    def __repr__(self) -> str:
        return f"World({self.stage.name})"


keys = st.one_of(st.none(), st.binary(max_size=24), st.just(5000).map(lambda n: b"K" * n))


def check_batch(world: World, codec: Codec, settings: Any, data: st.DataObject, test: str) -> None:
    fuzzed = data.draw(st.lists(st.tuples(keys, world.fuzzed), min_size=1, max_size=4), label="fuzzed (key, value)")
    entries = [(True, k, v) for k, v in world.valid] + [(False, k, v) for k, v in fuzzed]
    order = data.draw(st.permutations(range(len(entries))), label="order")
    topic = settings.topic(world.stage.source)
    messages = [SourceMessage(topic, 5, 7000 + n, entries[i][1], entries[i][2]) for n, i in enumerate(order)]
    is_valid = [entries[i][0] for i in order]
    count(test, len(fuzzed))

    alone_context = world.context()
    alone = run(world.stage, alone_context, codec, [m for m, ok in zip(messages, is_valid, strict=True) if ok])
    context = world.context()
    result = run(world.stage, context, codec, messages)

    assert [m for m, _ in result.outputs] == messages, "every source message, in source order"
    assert all(a is b for (a, _), b in zip(result.outputs, messages, strict=True))
    expected = {id(m): emits for m, emits in alone.outputs}
    for (message, emits), ok in zip(result.outputs, is_valid, strict=True):
        if ok:
            assert emits == expected[id(message)], f"a valid neighbour changed: offset {message.offset}"
            assert not any(e.topic == Topic.DEAD_LETTER for e in emits)
        elif dead_letter_of(world.stage.name, message, emits) is None:
            world.judge(message, emits, context)

    fitted = fit(world.stage, result, codec, settings)
    assert len(fitted) == len(messages)
    for records, (_, emits), ok in zip(fitted, result.outputs, is_valid, strict=True):
        if ok:  # the valid ones go out as they are
            assert [r.topic for r in records] == [settings.topic(e.topic) for e in emits]

    mixed_tables, alone_tables = world.tables(context), world.tables(alone_context)
    for name, table in alone_tables.items():
        for key, value in table.items():
            if "FZ" not in key:  # the fuzzed records' own state (set up for them) is theirs to change
                assert mixed_tables[name].get(key) == value, f"table {name}[{key!r}] changed by the fuzzed records"


# --- what a stage may make of a fuzzed record that decoded ---------------------------------------


def topics_of(emits: list[Emit]) -> list[str]:
    return [str(e.topic) for e in emits]


def a_work_item_with_findings(item: CodingReviewItem | ScrubRejected) -> None:
    assert has_errors(item.findings), "a work item opened for errors names them"
    assert all(f.rule_id and f.message and f.element for f in item.findings)
    assert len(item.findings) <= FINDINGS_LISTED + 1


def judge_coding(message: SourceMessage, emits: list[Emit], context: WorkerContext) -> None:
    if topics_of(emits) == [Topic.CODING_REVIEW]:
        item = emits[0].event
        assert not item.is_audit and item.encounter == message.value
        a_work_item_with_findings(item)
    else:  # passed every coding check: the claim stage's scrubber judges it next (see the pipeline test)
        assert topics_of(emits) == [Topic.CODED], topics_of(emits)
        assert not has_errors(emits[0].event.findings)


def judge_recoding(codec: Codec) -> Judge:
    def judge(message: SourceMessage, emits: list[Emit], context: WorkerContext) -> None:
        action = codec.decode(message.value, CodingAction)
        shape = topics_of(emits)
        if shape == []:
            return  # not a FIX (only the fold reads it), or a FIX handled before
        if shape == [Topic.CODING_ACTIONS]:
            verdict = emits[0].event
            assert verdict.action == CodingActionType.FIX_REJECTED and verdict.note
        elif shape == [Topic.CODING_REVIEW]:
            item = emits[0].event
            assert (item.work_item_id, item.revision) == (action.work_item_id, action.revision + 1)
            a_work_item_with_findings(item)
        else:
            assert shape == [Topic.CODED, Topic.CODING_ACTIONS], shape
            assert emits[0].event.review_work_item_id == action.work_item_id
            assert emits[1].event.action == CodingActionType.RESOLVED

    return judge


def judge_claim_decided(emits: list[Emit], codec: Codec) -> None:
    shape = topics_of(emits)
    if shape == [Topic.SCRUB_REJECTED]:
        rejected = emits[0].event
        a_work_item_with_findings(rejected)
        assert codec.decode(rejected.claim, ClaimSubmitted).claim_id == rejected.claim_id
    elif shape == [Topic.FRONT_DESK]:
        item = emits[0].event
        assert isinstance(item, FrontDeskItem) and item.reason.strip()
        assert codec.decode(item.coded, CodedEncounter).encounter_id == item.encounter_id
    else:
        assert shape == [Topic.CLAIMS_SUBMITTED, Topic.CLAIM_STATUS], shape
        assert emits[0].event.claim_id == emits[1].event.claim_id


def judge_claims(codec: Codec) -> Judge:
    def judge(message: SourceMessage, emits: list[Emit], context: WorkerContext) -> None:
        coded = codec.decode(message.value, CodedEncounter)
        shape = topics_of(emits)
        if shape == [Topic.ELIGIBILITY_REQUESTS]:  # parked until the payer answers
            parked = TakenOn.loads(context.tables[Table.CLAIMS_BY_ENCOUNTER][coded.encounter_id]).coded
            assert parked == message.value
        elif shape == [Topic.DUPLICATES]:  # a second fuzzed record of one encounter
            assert emits[0].event.claim_id == claim_id_for(coded.encounter_id)
        else:
            judge_claim_decided(emits, codec)

    return judge


def judge_eligibility(codec: Codec) -> Judge:
    def judge(message: SourceMessage, emits: list[Emit], context: WorkerContext) -> None:
        answer = codec.decode(message.value, EligibilityResponse)
        if emits == []:  # no encounter waited for it (any more): cached only
            assert answer.encounter_id not in context.claim_state.awaiting
        else:
            judge_claim_decided(emits, codec)

    return judge


def judge_posting(codec: Codec) -> Judge:
    def judge(message: SourceMessage, emits: list[Emit], context: WorkerContext) -> None:
        remit = codec.decode(message.value, Remittance)
        if emits == []:  # posted before (a fuzzed twin)
            ledger = Ledger.loads(context.tables[Table.CLAIM_LEDGER][remit.claim_id])
            assert remit.remittance_id in ledger.remittance_ids
            return
        assert emits[0].topic == Topic.CLAIM_STATUS and emits[0].event.claim_id == remit.claim_id
        rest = emits[1:]
        if rest and rest[0].topic == Topic.STATEMENTS:
            rest = rest[1:]
        if rest:  # a denial: in its category's work queue, saying why
            (emit,) = rest
            item = emit.event
            assert isinstance(item, DenialWorkItem) and emit.topic == item.queue
            assert item.reasons and item.all_carcs and item.carc in item.all_carcs

    return judge


def judge_denial_actions(codec: Codec) -> Judge:
    def judge(message: SourceMessage, emits: list[Emit], context: WorkerContext) -> None:
        action = codec.decode(message.value, DenialAction)
        shape = topics_of(emits)
        if shape in ([], [Topic.CLAIM_STATUS]):
            return  # nothing the engine does (CLAIM, APPEAL, a refused action), or money moved on the ledger
        if shape == [Topic.DENIAL_ACTIONS]:  # the replacement was not sent: back with the biller, saying why
            verdict = emits[0].event
            assert verdict.action == DenialActionType.RESUBMIT_REJECTED and verdict.note
        else:
            assert shape == [Topic.CLAIMS_SUBMITTED, Topic.CLAIM_STATUS], shape
            assert emits[0].event == action.replacement_claim  # sent as the biller's tool built it

    return judge


def judge_payer(codec: Codec, stage: str) -> Judge:
    def judge(message: SourceMessage, emits: list[Emit], runtime: PayerRuntime) -> None:
        shape = topics_of(emits)
        if stage == "payer-eligibility":
            assert shape == [Topic.ELIGIBILITY_RESPONSES]
            assert emits[0].key == codec.decode(message.value, EligibilityRequest).encounter_id
        elif stage == "payer-intake":
            assert shape == [Topic.PAYER_CLAIMS] and emits[0].event == message.value
        elif stage == "payer":  # the payer answers: a remittance (paid or denied), nothing for a duplicate
            assert set(shape) <= {Topic.REMITTANCES}
        else:
            assert shape in ([], [Topic.DENIAL_ACTIONS])
            if shape:
                assert emits[0].event.action == DenialActionType.APPEAL_DECIDED

    return judge


# --- the worlds ------------------------------------------------------------------------------------


def worker_tables(context: WorkerContext) -> Mapping[str, Mapping[str, str]]:
    return {str(table): entries for table, entries in context.tables.items()}


def answer_for(coded: CodedEncounter, status: EligibilityStatus = EligibilityStatus.ACTIVE) -> EligibilityResponse:
    return EligibilityResponse(
        request_id=f"ER-{coded.encounter_id}", encounter_id=coded.encounter_id, payer_id=coded.payer_id,
        member_id=coded.member_id, date_of_service=coded.date_of_service, status=status, plan_id="MCR01-GOLD",
        coverage_start=date(2020, 1, 1), coverage_end=None if status == EligibilityStatus.ACTIVE else date(2025, 1, 1),
        copay=Decimal("0.00"), deductible_remaining=Decimal("0.00"),
        reason=None if status == EligibilityStatus.ACTIVE else "coverage ended 2025-01-01", responded_at=NOW)


@pytest.fixture(scope="module")
def npis(claim_ctx) -> dict[str, str]:
    """The practice's billing NPI and a rendering one from the master data: claims that scrub clean."""
    return {"billing_npi": claim_ctx.providers.billing.npi, "rendering_npi": sorted(claim_ctx.providers.rendering)[0]}


def coded_ok(n: int | str, npis: Mapping[str, str], **changes: Any) -> CodedEncounter:
    return make_coded_encounter(encounter_id=f"ENC-OK-{n}", member_id=f"MCROK{n:0>7}", **{**npis, **changes})


def encounter_ok(n: int | str, npis: Mapping[str, str], **changes: Any) -> Encounter:
    return make_encounter(encounter_id=f"ENC-OK-{n}", member_id=f"MCROK{n:0>7}", **{**npis, **changes})


#: The fuzzed records' own ids: never a valid neighbour's, so a neighbour's outputs may not change.
FZ = {"encounter_id": "ENC-FZ-1", "member_id": "MCRFZ0000001"}


@pytest.fixture
def world_coding(worker_context, codec, samples, npis) -> World:
    valid = [encounter_ok(i, npis) for i in range(5)]
    template = make_encounter(**FZ, **npis)
    return World(STAGES[0], worker_context, [(e.encounter_id.encode(), codec.encode(e)) for e in valid],
                 mut.fuzzed_values(codec, samples, template), judge_coding, worker_tables)


def fix_action(encounter: Encounter, codec: Codec, action_id: str, corrected: bytes | None = None,
               kind: CodingActionType = CodingActionType.FIX) -> CodingAction:
    return CodingAction(
        action_id=action_id, work_item_id=review_item_id(encounter.encounter_id), encounter_id=encounter.encounter_id,
        revision=1, action=kind, actor="coder-17", note="coded to full specificity",
        changes=["diagnosis 1: E11 -> E11.9"], occurred_at=NOW,
        corrected_encounter=codec.encode(encounter) if corrected is None else corrected)


@pytest.fixture
def world_recoding(worker_context, codec, samples, npis) -> World:
    valid = [fix_action(encounter_ok(i, npis), codec, f"CA-OK-{i}") for i in range(4)]
    valid.append(fix_action(encounter_ok(9, npis), codec, "CA-OK-9", kind=CodingActionType.QUERY))
    fz_encounter = make_encounter(**FZ, **npis)
    template = fix_action(fz_encounter, codec, "CA-FZ-1")
    nested = {"corrected_encounter": mut.nested_values(codec, samples, fz_encounter)}
    return World(STAGES[1], worker_context, [(a.encounter_id.encode(), codec.encode(a)) for a in valid],
                 mut.fuzzed_values(codec, samples, template, nested), judge_recoding(codec), worker_tables)


@pytest.fixture
def world_claims(worker_context, codec, samples, npis) -> World:
    valid = [coded_ok(i, npis) for i in range(6)]
    fz = make_coded_encounter(**FZ, **npis)

    def context() -> WorkerContext:
        ctx: WorkerContext = worker_context()
        for coded in [*valid[::2], fz]:  # half the valid members answered before; the fuzzed one too
            ctx.claim_state.answers.put(answer_for(coded))
        return ctx

    return World(STAGES[2], context, [(c.encounter_id.encode(), codec.encode(c)) for c in valid],
                 mut.fuzzed_values(codec, samples, fz), judge_claims(codec), worker_tables)


@pytest.fixture
def world_eligibility(worker_context, codec, samples, npis) -> World:
    parked = [coded_ok(i, npis) for i in range(5)]
    fz = make_coded_encounter(**FZ, **npis)
    answers = [answer_for(c) for c in parked[:4]] + [answer_for(parked[4], EligibilityStatus.INACTIVE)]

    def context() -> WorkerContext:
        ctx: WorkerContext = worker_context()
        for coded in [*parked, fz]:
            ctx.tables[Table.CLAIMS_BY_ENCOUNTER][coded.encounter_id] = TakenOn(
                claim_id_for(coded.encounter_id), parked=True, origins=[], coded=codec.encode(coded)).dumps()
        return ctx

    return World(STAGES[3], context, [(a.encounter_id.encode(), codec.encode(a)) for a in answers],
                 mut.fuzzed_values(codec, samples, answer_for(fz)), judge_eligibility(codec), worker_tables)


def remittance(claim_id: str, outcome: RemittanceOutcome = RemittanceOutcome.PARTIALLY_PAID) -> Remittance:
    """A 99213 with the patient's coinsurance and, partly paid, a J3301 denied CO-16."""
    lines = [make_remittance_line(1, "140.00", [make_adjustment(GroupCode.PR, "2", "20.00")])]
    if outcome != RemittanceOutcome.PAID:
        lines.append(make_remittance_line(2, "88.00", [make_adjustment(GroupCode.CO, "16", "88.00")],
                                          procedure_code="J3301"))
    return factories.make_remittance(lines, outcome, claim_id=claim_id, remittance_id=f"R-{claim_id}",
                                     encounter_id=f"ENC-{claim_id}")


@pytest.fixture
def world_posting(worker_context, codec, samples) -> World:
    valid = [remittance(f"C-OK-{i}", outcome) for i, outcome in
             enumerate([RemittanceOutcome.PAID, RemittanceOutcome.PARTIALLY_PAID, RemittanceOutcome.PAID])]
    return World(STAGES[4], worker_context, [(r.claim_id.encode(), codec.encode(r)) for r in valid],
                 mut.fuzzed_values(codec, samples, remittance("C-FZ-1")), judge_posting(codec), worker_tables)


def denied_ledger(claim_id: str) -> str:
    return Ledger(claim_id, f"ENC-{claim_id}", "PPO01", Decimal("298.00"), ClaimState.DENIED,
                  denied=Decimal("298.00"), remittance_ids=[f"R-{claim_id}"]).dumps()


@pytest.fixture(scope="module")
def original_claim(samples) -> ClaimSubmitted:
    """The sample claim, with the subscriber's birth date the scrubber requires of a dependent."""
    claim: ClaimSubmitted = samples[ClaimSubmitted]
    assert claim.subscriber is not None
    return dataclasses.replace(claim, subscriber=dataclasses.replace(claim.subscriber, birth_date=date(1980, 1, 2)))


def resubmit(claim_id: str, original: ClaimSubmitted, codec: Codec) -> tuple[DenialAction, ClaimSubmitted]:
    new = replacement_claim(dataclasses.replace(original, claim_id=claim_id), ClaimCorrections(), f"{claim_id}-R1",
                            NOW)
    action = factories.make_denial_action(DenialActionType.RESUBMIT, action_id=f"DA-{claim_id}", claim_id=claim_id,
                                          work_item_id=f"DN-{claim_id}", replacement_claim_id=new.claim_id,
                                          replacement_claim=codec.encode(new), payer_id="PPO01")
    return action, new


@pytest.fixture
def world_denial_actions(worker_context, codec, samples, original_claim) -> World:
    A = DenialActionType
    valid = [
        factories.make_denial_action(A.WRITE_OFF, action_id="DA-OK-0", claim_id="C-OK-0", work_item_id="DN-OK-0",
                                     adjustment_reason="29", amount=Decimal("12.50")),
        factories.make_denial_action(A.CLAIM, action_id="DA-OK-1", claim_id="C-OK-1", work_item_id="DN-OK-1"),
        resubmit("C-OK-2", original_claim, codec)[0],
    ]
    fz_resubmit, fz_claim = resubmit("C-FZ-1", original_claim, codec)
    fz_write_off = factories.make_denial_action(A.WRITE_OFF, action_id="DA-FZ-2", claim_id="C-FZ-2",
                                                work_item_id="DN-FZ-2", adjustment_reason="29", amount=Decimal("5.00"))
    nested = {"replacement_claim": mut.nested_values(codec, samples, fz_claim)}

    def context() -> WorkerContext:
        claims = ["C-OK-0", "C-OK-1", "C-OK-2", "C-FZ-1", "C-FZ-2"]
        made: WorkerContext = worker_context(tables={Table.CLAIM_LEDGER: {c: denied_ledger(c) for c in claims}})
        return made

    fuzzed = st.one_of(mut.fuzzed_values(codec, samples, fz_resubmit, nested),
                       mut.fuzzed_values(codec, samples, fz_write_off))
    return World(STAGES[5], context, [(a.claim_id.encode(), codec.encode(a)) for a in valid], fuzzed,
                 judge_denial_actions(codec), worker_tables)


PAYER_MEMBERS = {
    "PPO000000001": Coverage("PPO000000001", "PPO01", "PPO01-GOLD", "18", None, date(2021, 1, 1), None),
    "MCR000000004": Coverage("MCR000000004", "MCR01", "MCR01-GOLD", "18", None, date(2011, 7, 1), None),
    "PPOFZ0000001": Coverage("PPOFZ0000001", "PPO01", "PPO01-GOLD", "18", None, date(2021, 1, 1), None),
}


@pytest.fixture(scope="module")
def payer_settings(settings, tmp_path_factory) -> Any:
    """Remittances at once (time scale 0), a fixed seed, master data for a few members."""
    here = dataclasses.replace(settings, state_dir=tmp_path_factory.mktemp("payer"), payer_time_scale=0, seed=7)
    records = [PatientRecord(factories.make_patient(patient_id=f"MRN{i}"), Address("1 OAK ST", "DENVER", "CO", "80202"),
                             coverage) for i, coverage in enumerate(PAYER_MEMBERS.values())]
    write_master_data(records, here.master_data_dir, [])
    return here


@pytest.fixture(scope="module")
def payer_runtime(payer_settings, codec) -> Callable[[], PayerRuntime]:
    """A fresh runtime per batch (reference data loaded once): empty member table, no notes,
    no stochastic denials (every payer's calibration far past its target)."""
    loaded = PayerRuntime(payer_settings, codec)
    assert loaded.reference is not None

    def fresh() -> PayerRuntime:
        runtime = PayerRuntime.__new__(PayerRuntime)
        runtime.__dict__.update(loaded.__dict__)
        runtime.calibration = {p: Calibration(claims=10_000, denied=10_000) for p in runtime.book.payers}
        runtime.next_due, runtime.member_table = {}, {}
        return runtime

    return fresh


def payer_claim(claim_id: str, member_id: str, payer_id: str = "PPO01") -> ClaimSubmitted:
    return factories.make_claim(claim_id, payer_id=payer_id, member_id=member_id, encounter_occurred_at=NOW,
                                submitted_at=NOW, diagnoses=["M17.11"])


def payer_world(stage_name: str, payer_runtime: Callable[[], PayerRuntime], codec: Codec, samples: Any) -> World:
    stage = next(s for s in PAYER_STAGES if s.name == stage_name)
    members = [("PPO01", "PPO000000001"), ("MCR01", "MCR000000004")]
    valid: list[Any]
    if stage.event_type is EligibilityRequest:
        valid = [EligibilityRequest(f"ER-OK-{i}", f"ENC-OK-{i}", payer, member, "Chen", date(1958, 7, 14),
                                    date(2026, 2, 27), NOW) for i, (payer, member) in enumerate(members)]
        template: Any = EligibilityRequest("ER-FZ-1", "ENC-FZ-1", "PPO01", "PPOFZ0000001", "Chen", date(1958, 7, 14),
                                           date(2026, 2, 27), NOW)
    elif stage.event_type is ClaimSubmitted:
        valid = [payer_claim(f"C-OK-{i}", member, payer) for i, (payer, member) in enumerate(members)]
        template = payer_claim("C-FZ-1", "PPOFZ0000001")
    else:
        valid = [factories.make_denial_action(DenialActionType.APPEAL, action_id=f"DA-OK-{i}", claim_id=f"C-OK-{i}",
                                              payer_id=payer, amount=Decimal("88.00"))
                 for i, (payer, _) in enumerate(members)]
        template = factories.make_denial_action(DenialActionType.APPEAL, action_id="DA-FZ-1", claim_id="C-FZ-1",
                                                payer_id="PPO01", amount=Decimal("88.00"))
    return World(stage, payer_runtime, [(b"k", codec.encode(e)) for e in valid],
                 mut.fuzzed_values(codec, samples, template), judge_payer(codec, stage_name),
                 lambda runtime: {"payer_members": runtime.member_table})


WORKER_WORLDS = {"coding": "world_coding", "recoding": "world_recoding", "claims": "world_claims",
                 "eligibility": "world_eligibility", "posting": "world_posting",
                 "denial-actions": "world_denial_actions"}
PAYER_WORLDS = ("payer-eligibility", "payer-intake", "payer", "payer-appeals")


@pytest.fixture(params=[*WORKER_WORLDS, *PAYER_WORLDS])
def world(request, payer_runtime, codec, samples) -> World:
    if request.param in WORKER_WORLDS:
        return request.getfixturevalue(WORKER_WORLDS[request.param])  # type: ignore[no-any-return]
    return payer_world(request.param, payer_runtime, codec, samples)


def test_every_declared_stage_is_fuzzed() -> None:
    assert [s.name for s in STAGES] == list(WORKER_WORLDS)
    assert [s.name for s in PAYER_STAGES] == list(PAYER_WORLDS)


def test_the_valid_events_get_their_normal_outputs(request, codec) -> None:
    """The worlds' valid events do what a test of the stage expects, so a neighbour that
    'did not change' did something."""
    expected = {
        "coding": [[Topic.CODED]] * 5,
        "recoding": [[Topic.CODED, Topic.CODING_ACTIONS]] * 4 + [[]],
        "claims": [[Topic.CLAIMS_SUBMITTED, Topic.CLAIM_STATUS], [Topic.ELIGIBILITY_REQUESTS]] * 3,
        "eligibility": [[Topic.CLAIMS_SUBMITTED, Topic.CLAIM_STATUS]] * 4 + [[Topic.FRONT_DESK]],
        "posting": [[Topic.CLAIM_STATUS, Topic.STATEMENTS],
                    [Topic.CLAIM_STATUS, Topic.STATEMENTS, Topic.DENIALS_MISSING_INFORMATION],
                    [Topic.CLAIM_STATUS, Topic.STATEMENTS]],
        "denial-actions": [[Topic.CLAIM_STATUS], [], [Topic.CLAIMS_SUBMITTED, Topic.CLAIM_STATUS]],
    }
    for name, fixture in WORKER_WORLDS.items():
        world: World = request.getfixturevalue(fixture)
        messages = [SourceMessage("t", 0, i, k, v) for i, (k, v) in enumerate(world.valid)]
        result = run(world.stage, world.context(), codec, messages)
        assert [[e.topic for e in emits] for _, emits in result.outputs] == expected[name], name


@fuzz(60)
@given(data=st.data())
def test_fuzzed_records_among_valid_ones(world: World, codec, settings, data) -> None:
    check_batch(world, codec, settings, data, f"stage {world.stage.name}: fuzzed records in a valid batch")


# --- encounters through coding and the claim stage: where each one ends ----------------------------


def through_coding_and_claims(worker_context: Callable[..., WorkerContext], codec: Codec, settings: Any,
                              values: Sequence[bytes | None]) -> list[list[Emit]]:
    """Encounter records through the coding stage, and what it coded through the claim stage
    with the payer's ACTIVE answer already cached; both results fitted as the runtime would.
    Per record, its end: the coding stage's outputs, or the claim stage's for its coded event."""
    context = worker_context()
    coding, claims = STAGES[0], STAGES[2]
    messages = [SourceMessage(settings.topic(Topic.ENCOUNTERS), 1, n, b"k", v) for n, v in enumerate(values)]
    coded = run(coding, context, codec, messages)
    fit(coding, coded, codec, settings)
    onward = [(n, e.event) for n, (_, emits) in enumerate(coded.outputs) for e in emits if e.topic == Topic.CODED]
    for _, event in onward:
        context.claim_state.answers.put(answer_for(event))
    claim_messages = [SourceMessage(settings.topic(Topic.CODED), 2, n, b"k", codec.encode(event))
                      for n, event in onward]
    billed = run(claims, context, codec, claim_messages)
    fit(claims, billed, codec, settings)
    ends = [emits for _, emits in coded.outputs]
    for (n, _), (message, emits) in zip(onward, billed.outputs, strict=True):
        if dead_letter_of(claims.name, message, emits) is None:
            if topics_of(emits) != [Topic.DUPLICATES]:
                judge_claim_decided(emits, codec)
        ends[n] = emits
    for (message, emits) in coded.outputs:
        if dead_letter_of(coding.name, message, emits) is None:
            judge_coding(message, emits, context)
    return ends


@fuzz(60)
@given(data=st.data())
def test_fuzzed_encounters_end_in_a_work_queue_a_dead_letter_or_a_clean_claim(worker_context, codec, settings,
                                                                              samples, npis, data) -> None:
    """Through two hops, nothing stalls and nothing is lost: each fuzzed encounter ends in the
    coding-review queue (with its errors), the scrub queue (with the scrubber's), the
    dead-letter topic (with the reason), or as a claim that passed every check."""
    template = make_encounter(**FZ, **npis)
    values = data.draw(st.lists(mut.fuzzed_values(codec, samples, template), min_size=1, max_size=6), label="values")
    count("pipeline coding -> claims: fuzzed encounters", len(values))
    ends = through_coding_and_claims(worker_context, codec, settings, values)
    assert len(ends) == len(values)
    for emits in ends:
        assert topics_of(emits) in ([Topic.CODING_REVIEW], [Topic.DEAD_LETTER], [Topic.SCRUB_REJECTED],
                                    [Topic.CLAIMS_SUBMITTED, Topic.CLAIM_STATUS],
                                    [Topic.DUPLICATES])  # a second record of one encounter: billed once


def many_lines(n: int) -> list[Procedure]:
    return [Procedure("99213", [], 1, [1]) for _ in range(n)]


#: The issue's absurd values, one by one, and the queue each encounter must end in with the
#: finding that sends it there (``None``: the dead-letter topic, with the error type).
ABSURD_ENCOUNTERS: dict[str, tuple[dict[str, Any], str, str]] = {
    "units -1": ({"procedures": [Procedure("99213", [], -1, [1])]}, "coding-review", "UNITS_INVALID"),
    "units 0": ({"procedures": [Procedure("99213", [], 0, [1])]}, "coding-review", "UNITS_INVALID"),
    "2^31-1 units of a code with an MUE": ({"procedures": [Procedure("99213", [], 2**31 - 1, [1])]},
                                           "coding-review", "MUE_EXCEEDED"),
    "date of service 9999-12-31": ({"date_of_service": date(9999, 12, 31)}, "scrub-rejected", "SCRUB_DOS_FUTURE"),
    "date of service 0001-01-01": ({"date_of_service": date(1, 1, 1)}, "coding-review", "PATIENT_BORN_AFTER_SERVICE"),
    "born 9999-12-31": ({"patient": {"birth_date": date(9999, 12, 31)}}, "coding-review",
                        "PATIENT_BORN_AFTER_SERVICE"),
    "10,000 lines": ({"procedures": many_lines(10_000)}, "coding-review", "LINES_TOO_MANY"),
    # 9,999 DX_DUPLICATE first: DX_TOO_MANY is past the 100 findings an item lists (counted in the last one).
    "10,000 diagnoses": ({"diagnoses": ["E11.9"] * 10_000}, "coding-review", "DX_DUPLICATE"),
    "NUL in a diagnosis": ({"diagnoses": ["E11.9\x00", "I10"]}, "coding-review", "ICD10_FORMAT"),
    "NUL alone as a diagnosis": ({"diagnoses": ["\x00"]}, "coding-review", "ICD10_FORMAT"),
    "fullwidth unicode diagnosis": ({"diagnoses": ["Ｅ１１．９", "I10"]}, "coding-review", "ICD10_FORMAT"),
    "emoji diagnosis": ({"diagnoses": ["😀"]}, "coding-review", "ICD10_FORMAT"),
    "NUL in a procedure code": ({"procedures": [Procedure("99214\x00", [], 1, [1, 2])]}, "coding-review",
                                "PROC_FORMAT"),
    "NUL modifier": ({"procedures": [Procedure("99214", ["\x00\x00"], 1, [1, 2])]}, "coding-review",
                     "MODIFIER_FORMAT"),
    "unicode place of service": ({"place_of_service": "１１"}, "scrub-rejected", "SCRUB_POS_INVALID"),
    "NUL payer id": ({"payer_id": "\x00"}, "scrub-rejected", "SCRUB_UNKNOWN_PAYER"),
    "empty encounter id": ({"encounter_id": ""}, "coding-review", "REQUIRED_FIELD"),
    "blank encounter id": ({"encounter_id": "   "}, "coding-review", "REQUIRED_FIELD"),
    "empty payer id": ({"payer_id": ""}, "coding-review", "REQUIRED_FIELD"),
    "empty member id": ({"member_id": ""}, "coding-review", "REQUIRED_FIELD"),
    "empty patient id": ({"patient": {"patient_id": ""}}, "coding-review", "REQUIRED_FIELD"),
    "empty NPIs": ({"billing_npi": "", "rendering_npi": ""}, "coding-review", "REQUIRED_FIELD"),
}


@pytest.mark.parametrize("name", list(ABSURD_ENCOUNTERS))
def test_an_absurd_encounter_ends_in_its_queue_with_its_finding(worker_context, codec, settings, npis,
                                                                name) -> None:
    changes, queue, rule_id = ABSURD_ENCOUNTERS[name]
    encounter = make_encounter(**{**FZ, **npis, **changes})
    (end,) = through_coding_and_claims(worker_context, codec, settings, [codec.encode(encounter)])
    count("explicit absurd encounters")
    assert topics_of(end) == [queue]
    findings = end[0].event.findings
    assert rule_id in {f.rule_id for f in findings if f.severity == "ERROR"}
    assert len(findings) <= FINDINGS_LISTED + 1
    if name == "10,000 diagnoses":  # listed up to the limit, the rest counted
        assert len(findings) == FINDINGS_LISTED + 1 and "more findings not listed" in findings[-1].message


def test_10000_distinct_diagnoses_and_lines_are_coded_in_seconds_not_minutes(worker_context, codec, npis) -> None:
    """Excludes1 and NCCI PTP look at pairs: over 10,000 diagnoses or lines, 10^8 pairs, 3.5
    minutes for one encounter (the partition waiting). They look at the first 48 diagnoses
    and 200 lines: beyond those the encounter cannot be billed anyway."""
    import time

    import simple_icd_10_cm as icd

    leaves = [c for c in icd.get_all_codes(with_dots=True) if icd.is_leaf(c)][:10_000]
    encounters = [make_encounter(**FZ, **npis, diagnoses=leaves),
                  make_encounter(**FZ, **npis, procedures=[Procedure(f"A{i:04d}", [], 1, [1]) for i in range(10_000)])]
    count("explicit absurd encounters", 2)
    messages = [SourceMessage("e", 0, n, b"k", codec.encode(e)) for n, e in enumerate(encounters)]
    started = time.perf_counter()
    result = run(STAGES[0], worker_context(), codec, messages)
    assert time.perf_counter() - started < 20  # minutes before
    rules = [{f.rule_id for f in emits[0].event.findings} for _, emits in result.outputs]
    assert "DX_TOO_MANY" in rules[0] or len(result.outputs[0][1][0].event.findings) == FINDINGS_LISTED + 1
    assert "LINES_TOO_MANY" in rules[1]


@pytest.mark.parametrize("units", [2**31, -(2**31) - 1, 2**63 - 1])
def test_units_beyond_an_avro_int_are_dead_lettered_by_the_coding_stage(worker_context, codec, settings, npis,
                                                                        units) -> None:
    record = to_record(make_encounter(**FZ, **npis, procedures=[Procedure("J3301", [], units, [1])]))
    (end,) = through_coding_and_claims(worker_context, codec, settings, [mut.write(mut.latest(codec, Encounter),
                                                                                   record)])
    count("explicit absurd encounters")
    assert topics_of(end) == [Topic.DEAD_LETTER]
    assert end[0].event.error_type == "UndecodableEvent" and "units: an int beyond 32 bits" in end[0].event.reason


def test_amounts_beyond_decimal_12_2_are_dead_lettered_or_rejected_never_rounded(world_posting, world_denial_actions,
                                                                                codec, original_claim) -> None:
    """A 10^12 billed amount, write-off, or replacement line charge: read exactly, never
    rounded to twelve digits. The remittance and the write-off are dead-lettered; the biller's
    replacement claim is not sent, and the biller hears why."""
    too_much = Decimal("1000000000000.00")
    remit = to_record(remittance("C-FZ-1"))
    remit["billed_amount"] = too_much
    write_off = to_record(factories.make_denial_action(
        DenialActionType.WRITE_OFF, action_id="DA-FZ-2", claim_id="C-FZ-2", work_item_id="DN-FZ-2",
        adjustment_reason="29", amount=Decimal("5.00")))
    write_off["amount"] = too_much
    action, claim = resubmit("C-FZ-1", original_claim, codec)
    claim_record = to_record(claim)
    claim_record["lines"][0]["charge"] = too_much
    claim_record["total_charge"] = too_much
    resubmit_record = to_record(action)
    resubmit_record["replacement_claim"] = mut.write(mut.latest(codec, ClaimSubmitted), claim_record)
    count("explicit absurd amounts", 3)

    (posted,) = run(world_posting.stage, world_posting.context(), codec,
                    [SourceMessage("r", 0, 0, b"k", mut.write(mut.latest(codec, Remittance), remit))]).outputs
    assert topics_of(posted[1]) == [Topic.DEAD_LETTER]
    assert "billed_amount: more digits than decimal(12, 2) holds" in posted[1][0].event.reason
    acted = run(world_denial_actions.stage, world_denial_actions.context(), codec, [
        SourceMessage("d", 0, 0, b"k", mut.write(mut.latest(codec, DenialAction), write_off)),
        SourceMessage("d", 0, 1, b"k", mut.write(mut.latest(codec, DenialAction), resubmit_record))]).outputs
    assert topics_of(acted[0][1]) == [Topic.DEAD_LETTER] and acted[0][1][0].event.error_type == "UndecodableEvent"
    assert topics_of(acted[1][1]) == [Topic.DENIAL_ACTIONS]
    verdict = acted[1][1][0].event
    assert verdict.action == DenialActionType.RESUBMIT_REJECTED and "UndecodableEvent" in (verdict.note or "")


# --- records just under and over the size limits ----------------------------------------------------


def review_item_size(world: World, codec: Codec, settings: Any, note: str) -> tuple[int, bytes]:
    """The encounter (it fails a coding check, so it opens a work item that carries it) and
    the size of the coding-review record it makes, as ``fit_outputs`` counts it."""
    encounter = make_encounter(**FZ, diagnoses=["M54.5"], clinical_note=note)  # M54.5: a header code
    value = codec.encode(encounter)
    result = run(world.stage, world.context(), codec, [SourceMessage("e", 0, 0, b"k", value)])
    unlimited = OutputLimits({str(t): 1 << 30 for t in Topic})
    ((record,),) = fit_outputs("coding", result, codec, unlimited, settings.topic, lambda: NOW)
    assert record.topic == settings.topic(Topic.CODING_REVIEW)
    return record.size, value


@fuzz(12)
@given(delta=st.integers(-3, 3))
def test_a_work_item_just_under_or_over_its_topics_limit(world_coding, codec, settings, delta) -> None:
    """The coder work item carries the encounter: an encounter near the limit makes an item
    over it. At ``max_message_bytes`` it goes out; one byte over, its source is dead-lettered
    with the sizes (the letter keeps the first 512 KiB of the encounter)."""
    limits = OutputLimits.of(settings)
    limit = limits.limit(Topic.CODING_REVIEW)
    size, _ = review_item_size(world_coding, codec, settings, "")
    note = "n" * (limit + delta - size)
    size, value = review_item_size(world_coding, codec, settings, note)
    note = "n" * (len(note) + limit + delta - size)  # the note's length prefix grew: once more
    size, value = review_item_size(world_coding, codec, settings, note)
    assert size == limit + delta
    count("size limit: coding work item at the limit")
    message = SourceMessage(settings.topic(Topic.ENCOUNTERS), 0, 9, b"ENC-FZ-1", value)
    result = run(world_coding.stage, world_coding.context(), codec, [message])
    ((record,),) = fit(world_coding.stage, result, codec, settings)
    if delta <= 0:
        assert record.topic == settings.topic(Topic.CODING_REVIEW) and record.size == limit + delta
    else:
        assert record.topic == settings.topic(Topic.DEAD_LETTER)
        assert record.size <= limits.limit(Topic.DEAD_LETTER)
        letter = codec.decode(record.value, DeadLetter)
        assert letter.error_type == "OutputTooLarge" and f"{limit + delta} bytes" in letter.reason
        assert (letter.original_size, letter.original_truncated) == (len(value), True)
        assert letter.original_value == value[:DEAD_LETTER_KEEP_BYTES]


@fuzz(16)
@given(delta=st.integers(-600, 600), garbage=st.binary(min_size=1, max_size=8))
def test_records_around_the_input_limit_among_valid_ones(world_coding, codec, settings, npis, delta,
                                                        garbage) -> None:
    """Source records of about ``max_message_bytes`` (a broker with a larger limit lets them
    through): garbage, a clean encounter and a failing one of that size, beside valid ones.
    The garbage is dead-lettered with its first 512 KiB, size and digest; the clean one is
    coded (the coded event does not carry the note); the failing one's work item is too large
    for its topic: its source is dead-lettered; the valid ones are coded; every record fits."""
    limits = OutputLimits.of(settings)
    size = limits.limit(Topic.ENCOUNTERS) + delta
    junk = (garbage * (size // len(garbage) + 1))[:size]
    base = codec.encode(make_encounter(**FZ, **npis, clinical_note=""))
    clean = codec.encode(make_encounter(**FZ, **npis, clinical_note="n" * (size - len(base) - 3)))
    failing = codec.encode(make_encounter(**{**FZ, "encounter_id": "ENC-FZ-2"}, **npis, diagnoses=["M54.5"],
                                          clinical_note="n" * (size - len(base) - 3)))
    values = [codec.encode(encounter_ok(i, npis)) for i in range(2)] + [junk, clean, failing]
    count("size limit: records around the input limit", 3)
    messages = [SourceMessage(settings.topic(Topic.ENCOUNTERS), 0, n, b"k", v) for n, v in enumerate(values)]
    result = run(world_coding.stage, world_coding.context(), codec, messages)
    fitted = fit(world_coding.stage, result, codec, settings)
    assert [[r.topic.rsplit(".", 1)[-1] if "dead" in r.topic else r.topic.split(".", 1)[-1] for r in records]
            for records in fitted] == [["coded"], ["coded"], ["dead-letter"], ["coded"], ["dead-letter"]]
    for records in fitted:
        assert all(r.size <= limits.limit(Topic.DEAD_LETTER if "dead" in r.topic else Topic.CODED) for r in records)
    junk_letter = codec.decode(fitted[2][0].value, DeadLetter)
    assert junk_letter.error_type == "UndecodableEvent"
    assert (junk_letter.original_size, junk_letter.original_truncated) == (size, True)
    assert junk_letter.original_value == junk[:DEAD_LETTER_KEEP_BYTES]
    assert codec.decode(fitted[4][0].value, DeadLetter).error_type == "OutputTooLarge"


# --- the bugs this suite found, fixed ------------------------------------------------------------


@pytest.mark.parametrize("code, rendering", [("J3301", "known"), ("83036", "known"), ("J3301", "unknown")])
def test_a_charge_beyond_what_a_claim_carries_dead_letters_the_coded_encounter(
        world_claims: World, codec: Codec, settings: Any, npis: Mapping[str, str], code: str, rendering: str) -> None:
    """Found: 2,147,483,647 units (a valid Avro int) of a code without an MUE passed the
    coding checks and was priced at fee x units, beyond decimal(12, 2): the claim could not
    be encoded, fit_outputs raised, and the claims stage stalled on the batch. Now the
    build refuses it (a ProcessingError naming the code and units) and the neighbour goes."""
    count("explicit found bugs")
    changes = {} if rendering == "known" else {"rendering_npi": "1234567893"}  # not in the master data: a scrub error
    coded = make_coded_encounter(**{**FZ, **npis, **changes}, lines=[CodedLine(1, code, [], 2**31 - 1, [1])])
    messages = [SourceMessage("c", 0, 0, b"k", codec.encode(coded)),
                SourceMessage("c", 0, 1, b"k", codec.encode(coded_ok(0, npis)))]
    result = run(world_claims.stage, world_claims.context(), codec, messages)
    (bad,), neighbour_records = fit(world_claims.stage, result, codec, settings)
    assert [r.topic for r in neighbour_records] == [settings.topic(Topic.CLAIMS_SUBMITTED),
                                                    settings.topic(Topic.CLAIM_STATUS)]
    letter = dead_letter_of("claims", messages[0], result.outputs[0][1])
    assert bad.topic == settings.topic(Topic.DEAD_LETTER) and letter is not None
    assert letter.error_type == "ProcessingError" and f"{code}: {2**31 - 1} units" in letter.reason


def test_a_balance_beyond_decimal_12_2_dead_letters_the_remittance_not_the_batch(
        world_posting: World, codec: Codec, settings: Any) -> None:
    """Found: a Remittance within its schema (billed 9,999,999,999.99, paid the negative)
    posts a balance of 19,999,999,999.98, beyond decimal(12, 2): the ClaimStatus could not be
    encoded and posting stalled on the batch. Now fit_outputs letters its source."""
    count("explicit found bugs")
    bad = dataclasses.replace(remittance("C-FZ-1", RemittanceOutcome.PAID), billed_amount=mut.MAX_MONEY,
                              paid_amount=-mut.MAX_MONEY)
    good = remittance("C-OK-0", RemittanceOutcome.PAID)
    messages = [SourceMessage("r", 0, 0, b"k", codec.encode(bad)), SourceMessage("r", 0, 1, b"k", codec.encode(good))]
    result = run(world_posting.stage, world_posting.context(), codec, messages)
    bad_records, good_records = fit(world_posting.stage, result, codec, settings)
    assert [r.topic for r in good_records] == [settings.topic(Topic.CLAIM_STATUS), settings.topic(Topic.STATEMENTS)]
    assert [r.topic for r in bad_records] == [settings.topic(Topic.DEAD_LETTER)]
    letter = codec.decode(bad_records[0].value, DeadLetter)
    assert letter.error_type == "OutputNotEncodable" and letter.original_value == messages[0].value


def test_a_claim_submitted_on_9999_12_31_is_refused_with_a_reason(payer_runtime: Callable[[], Any],
                                                                   codec: Codec) -> None:
    """Found: payment_date = submitted_at + latency overflowed (OverflowError, the stage's
    catch-all with a traceback). Now a ProcessingError says why."""
    count("explicit found bugs")
    claim = dataclasses.replace(payer_claim("C-FZ-1", "PPOFZ0000001"), submitted_at=mut.ABSURD_TIMES[1])
    stage = next(s for s in PAYER_STAGES if s.name == "payer")
    message = SourceMessage("p", 0, 0, b"k", codec.encode(claim))
    ((_, emits),) = run(stage, payer_runtime(), codec, [message]).outputs
    letter = dead_letter_of("payer", message, emits)
    assert letter is not None and letter.error_type == "ProcessingError" and "C-FZ-1" in letter.reason


def test_a_remittance_paid_on_9999_12_31_is_refused_with_a_reason(world_posting: World, codec: Codec) -> None:
    """Found: due_date = payment_date + statement_due_days overflowed (OverflowError, the
    catch-all). Now a ProcessingError names the remittance."""
    count("explicit found bugs")
    remit = dataclasses.replace(remittance("C-FZ-1", RemittanceOutcome.PAID), payment_date=date(9999, 12, 31))
    message = SourceMessage("r", 0, 0, b"k", codec.encode(remit))
    ((_, emits),) = run(world_posting.stage, world_posting.context(), codec, [message]).outputs
    letter = dead_letter_of("posting", message, emits)
    assert letter is not None and letter.error_type == "ProcessingError" and remit.remittance_id in letter.reason
