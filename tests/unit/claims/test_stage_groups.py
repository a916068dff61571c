"""The claim stage's two halves (coded encounters, 271 answers) share its dedupe entries,
and a batch's writes land only once its outputs are acknowledged. Run by two agents in one
worker, a batch of one decided on an entry the other's batch was about to change: a 271
read before its encounter's parking landed was dropped (the encounter parked for good),
and a resend's stale "parked" over "decided" let the next 271 bill the encounter again.
Stages that share a table are one agent (``stage_groups``), reading all their topics one
batch at a time (``run_group``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.claims.build import claim_id_for
from engine.claims.stage import TakenOn
from engine.model.events import CodedEncounter, EligibilityRequest
from engine.runtime.delivery import OutputLimits, fit_outputs
from engine.runtime.staged_state import StagedTable, StateJournal
from engine.runtime.stages import SOURCE_HEADER, SourceMessage, StageResult, run_group, stage_groups
from engine.settings import Settings
from engine.wire.topics import Table, Topic
from engine.worker.stages import STAGES, TABLES, make_app
from simulators.payer.app import PAYER_STAGES
from tests.unit.claims.test_build import answer_to


def names(groups) -> list[tuple[str, ...]]:
    return [tuple(stage.name for stage in group) for group in groups]


def test_stages_sharing_a_table_are_one_group_and_others_their_own() -> None:
    assert names(stage_groups(STAGES)) == [("coding", "recoding"), ("claims", "eligibility"),
                                           ("posting", "denial-actions")]
    assert names(stage_groups(PAYER_STAGES)) == [(stage.name,) for stage in PAYER_STAGES]


def test_a_table_shared_through_a_third_stage_joins_all_three() -> None:
    a, b, c, d = (dataclasses.replace(STAGES[0], name=n) for n in "abcd")
    chained = [dataclasses.replace(a, state=("t1",)), dataclasses.replace(b, state=("t2",)),
               dataclasses.replace(c, state=("t2", "t1")), d]
    assert names(stage_groups(chained)) == [("a", "b", "c"), ("d",)]


def test_the_worker_runs_one_agent_per_group_reading_its_topics(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(), state_dir=tmp_path, topic_prefix="t.")
    app = make_app(settings, "127.0.0.1:9")  # declared only: nothing connects
    subscribed = sorted(sorted(agent.channel.topics) for agent in app.agents.values())
    expected = sorted(sorted(settings.topic(stage.source) for stage in group) for group in stage_groups(STAGES))
    assert subscribed == expected
    assert ["t.coded", "t.eligibility-responses"] in subscribed


@pytest.fixture
def claim_group(worker_context, codec, settings):
    """The claim group as its agent runs it, over dict tables staged like the worker's."""
    tables: dict[Table, dict[str, str]] = {table: {} for table in TABLES}
    ctx = worker_context(tables={table: StagedTable(t) for table, t in tables.items()})
    (group,) = [g for g in stage_groups(STAGES) if "claims" in {s.name for s in g}]

    def run(messages: list[SourceMessage]) -> StageResult:
        with StateJournal.opened() as journal:
            result = run_group(group, ctx, codec, messages, settings.topic)
            journal.apply(lambda message: True)  # every output acknowledged
        return result

    return run, tables[Table.CLAIMS_BY_ENCOUNTER]


def coded_record(codec, settings, visit: CodedEncounter, offset: int, origin: str) -> SourceMessage:
    return SourceMessage(settings.topic(Topic.CODED), 2, offset, visit.encounter_id.encode(), codec.encode(visit),
                         ((SOURCE_HEADER, origin.encode()),))


def answer_record(codec, settings, result: StageResult, offset: int) -> SourceMessage:
    """The payer's 271 to the 270 in ``result``."""
    (request,) = [e.event for e in result.emits if e.topic == Topic.ELIGIBILITY_REQUESTS]
    assert isinstance(request, EligibilityRequest)
    return SourceMessage(settings.topic(Topic.ELIGIBILITY_RESPONSES), 2, offset, request.encounter_id.encode(),
                         codec.encode(answer_to(request, datetime.now(UTC))))


async def test_a_batch_mixing_the_group_s_topics_is_decided_in_source_order(claim_group, codec, settings,
                                                                             coded) -> None:
    run, billed = claim_group
    visit = dataclasses.replace(coded, date_of_service=datetime.now(UTC).date() - timedelta(days=2))
    asked = run([coded_record(codec, settings, visit, 40, "claims.encounters:0:7:0")])
    answer = answer_record(codec, settings, asked, 1)
    resend = coded_record(codec, settings, visit, 41, "claims.encounters:0:9:0")

    mixed = run([answer, resend, dataclasses.replace(answer, offset=2)])  # the 271, a resend, the 271 again

    claim_id = claim_id_for(visit.encounter_id)
    assert [(e.topic, e.key) for e in mixed.emits] == [
        (Topic.CLAIMS_SUBMITTED, claim_id), (Topic.CLAIM_STATUS, claim_id), (Topic.DUPLICATES, visit.encounter_id)]
    assert mixed.dead_letters == []
    assert not TakenOn.loads(billed[visit.encounter_id]).parked


async def test_each_message_is_dead_lettered_by_its_own_stage(claim_group, codec, settings) -> None:
    run, _ = claim_group
    junk = b"HL7|not-avro|"
    result = run([SourceMessage(settings.topic(Topic.CODED), 0, 5, b"E1", junk),
                  SourceMessage(settings.topic(Topic.ELIGIBILITY_RESPONSES), 0, 6, b"E1", junk)])
    assert [(letter.stage, letter.source_topic, letter.source_offset) for letter in result.dead_letters] == [
        ("claims", settings.topic(Topic.CODED), 5), ("eligibility", settings.topic(Topic.ELIGIBILITY_RESPONSES), 6)]


def claim_sources(codec, settings, result: StageResult) -> list[bytes]:
    """The source headers the claims of ``result`` go out with."""
    records = fit_outputs("claims", result, codec, OutputLimits.of(settings), settings.topic, lambda: datetime.now(UTC))
    return [dict(record.headers)[SOURCE_HEADER] for records_of in records for record in records_of
            if record.topic == settings.topic(Topic.CLAIMS_SUBMITTED)]


async def test_a_coded_record_decided_again_after_a_kill_sends_its_claim_from_the_same_source(
        worker_context, codec, settings, coded) -> None:
    """Seen on Kafka: a worker decided an encounter from its coded record with a cached
    answer and was killed after the claim's ack, before its dedupe entry landed. The coded
    record, read again with no answer cached, was parked, asked for and billed from its
    271: the same claim from a second source, counted as a second original. Decided from
    its 271, the claim names the coded record it is made from, so it is that claim again."""
    visit = dataclasses.replace(coded, date_of_service=datetime.now(UTC).date() - timedelta(days=2))
    record = coded_record(codec, settings, visit, 40, "claims.encounters:0:7:0")
    (claims_stage, eligibility_stage) = [s for s in STAGES if s.name in ("claims", "eligibility")]

    first_tables: dict[Table, dict[str, str]] = {table: {} for table in TABLES}
    first = worker_context(tables=first_tables)
    asked = claims_stage.run(first, codec, [record])  # no answer cached: parked, a 270
    from_the_271 = eligibility_stage.run(first, codec, [answer_record(codec, settings, asked, 62)])

    # Another life: the answer cached (written beside the claim), the dedupe entry lost.
    again = worker_context(tables={**{table: {} for table in TABLES},
                                   Table.ELIGIBILITY_ANSWERS: dict(first_tables[Table.ELIGIBILITY_ANSWERS])})
    from_the_coded_record = claims_stage.run(again, codec, [record])

    expected = [f"{settings.topic(Topic.CODED)}:2:40:0".encode()]
    assert claim_sources(codec, settings, from_the_coded_record) == expected
    assert claim_sources(codec, settings, from_the_271) == expected


def test_a_parked_entry_keeps_where_its_coded_record_was_read_and_reads_an_older_entry() -> None:
    parked = TakenOn("C1", True, ["claims.encounters:0:7:0"], b"\x00avro bytes", "claims.coded:2:40")
    assert TakenOn.loads(parked.dumps()) == parked
    older = TakenOn("C1", True, ["claims.encounters:0:7:0"], b"\x00avro bytes").dumps()  # before coded_at
    assert TakenOn.loads(older) == dataclasses.replace(parked, coded_at=None)
