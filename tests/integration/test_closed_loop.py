"""The whole loop on a real broker: EHR → coding → claims → payer → denial routing,
with bad encounters mixed in. Asserts the accounting from the topics themselves."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
from rich.console import Console

from engine.cli.run import RunOptions, run_closed_loop
from engine.model.events import CodingReviewItem, DeadLetter, Encounter, Severity
from engine.ops.audit import reconcile
from engine.runtime.kafka import connection_environment, make_producer
from engine.settings import Settings
from engine.wire.codec import Codec, default_codec
from engine.wire.topics import Table, Topic
from engine.worker.stages import STAGES
from simulators.ehr import CODING_ERROR_KINDS, EXPECTED_RULE, UNREADABLE_KINDS, Kind, plan_encounters
from simulators.payer.adjudication import PayerBook
from tests.factories import make_encounter
from tests.fixtures.kafka import SettingsFactory, read_topic

pytestmark = pytest.mark.integration

N_ENCOUNTERS = 300
SEED = 3
BAD_RATE = 0.1




async def test_closed_loop_settles_and_balances(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    options = RunOptions(encounters=N_ENCOUNTERS, rate=None, seed=SEED, bad_rate=BAD_RATE, resend_rate=0.02,
                         summary_path=None, timeout_s=240, live=False)
    summary = await run_closed_loop(settings, options, Console(file=io.StringIO()))

    assert summary["settled"] is True
    for name, identity in summary["identities"].items():
        assert identity["holds"], name
    assert summary["dead_lettered"] > 0
    assert summary["coding_review"] > 0
    assert summary["denied"] > 0
    assert summary["duplicates_dropped"] > 0
    assert summary["repeated_claim_ids"] == 0

    codec = default_codec(settings.schemas_dir)
    planned = plan_encounters(N_ENCOUNTERS, SEED, BAD_RATE, 0.02, codec, PayerBook.load(settings.payer_profiles_file))
    kinds = Counter(r.kind for r in planned)
    assert summary["encounters"] == len(planned)
    assert summary["dead_lettered"] == kinds[Kind.UNDECODABLE] + kinds[Kind.TRUNCATED]
    assert summary["coding_review"] == sum(kinds[k] for k in CODING_ERROR_KINDS)
    # Every injected kind is caught by its rule (items per rule can exceed kinds: one
    # mistake may break two rules, e.g. an external cause listed first is also unlinked).
    for kind in CODING_ERROR_KINDS:
        if kinds[kind]:
            assert summary["coding_findings_by_rule"][EXPECTED_RULE[kind]] >= kinds[kind], kind
    # The coder simulator acted on every item: fixes went on to claims, the rest wait on queries.
    assert summary["coding_fixes"] + summary["coding_queries"] == summary["coding_review"]
    assert summary["coded_after_review"] == summary["coding_fixes"] > 0
    assert summary["coding_fixes_still_failing"] == 0
    assert summary["coding_audits_closed"] == summary["coding_audit_sampled"]
    assert summary["coded"] == summary["coded_first_pass"] + summary["coded_after_review"]
    assert summary["duplicates_dropped"] == kinds[Kind.RESEND]
    # Payer and posting: every claim answered, every remittance balanced and posted once,
    # the patients' shares billed.
    assert summary["remittances_unbalanced"] == 0
    assert summary["remittances"] - summary["remittances_repeated"] == summary["claims_submitted"]
    assert summary["statements"] > 0
    assert summary["statement_amount"] == summary["patient_responsibility"]
    assert set(summary["first_pass_by_payer"]) == set(PayerBook.load(settings.payer_profiles_file).payers)

    await _every_bad_encounter_is_findable(settings, planned)
    await _no_claim_id_twice(settings)
    await _tables_follow_their_sources(settings)

    audited = await reconcile(settings, settings.bootstrap_servers, codec, grace_s=0)
    assert (audited.lost, audited.in_flight, audited.duplicates, audited.broken_identities) == ([], [], 0, [])
    assert audited.ok and audited.encounters == len({r.encounter_id for r in planned})
    assert audited.resent == kinds[Kind.RESEND]
    await _claims_reconcile_exits_1_on_a_lost_encounter(settings, codec)


async def _every_bad_encounter_is_findable(settings: Settings, planned: list) -> None:  # type: ignore[type-arg]
    """Each bad encounter is in the dead-letter topic (with the exact bytes found at its
    source offset) or in the coding-review queue (with the original event)."""
    codec = default_codec(settings.schemas_dir)
    sent = {(r.partition, r.offset): r for r in await read_topic(settings, settings.topic("encounters"))}
    letters = {
        letter.source_key: letter
        for letter in (codec.decode(r.value, DeadLetter)
                       for r in await read_topic(settings, settings.topic("dead-letter")))
    }
    reviews = {
        item.encounter_id: item
        for item in (codec.decode(r.value, CodingReviewItem)
                     for r in await read_topic(settings, settings.topic("coding-review")))
    }
    for record in planned:
        if record.kind in UNREADABLE_KINDS:
            letter = letters[record.encounter_id.encode()]
            assert letter.source_topic == settings.topic("encounters")
            assert letter.stage == "coding" and letter.error_type == "UndecodableEvent" and letter.reason
            original = sent[(letter.source_partition, letter.source_offset)]
            assert letter.original_value == original.value and original.key == record.encounter_id.encode()
        elif record.kind in CODING_ERROR_KINDS:
            item = reviews[record.encounter_id]
            assert not item.is_audit
            assert EXPECTED_RULE[record.kind] in {f.rule_id for f in item.findings if f.severity == Severity.ERROR}
            assert codec.decode(item.encounter, Encounter).encounter_id == record.encounter_id


async def _no_claim_id_twice(settings: Settings) -> None:
    keys = [r.key for r in await read_topic(settings, settings.topic("claims-submitted"))]
    assert keys and len(keys) == len(set(keys))


#: Each worker table and the topics whose stages read and write it (keyed the same way).
TABLE_SOURCES = {
    Table.CLAIMS_BY_ENCOUNTER: (Topic.CODED, Topic.ELIGIBILITY_RESPONSES),
    Table.CODING_ITEMS_BY_ENCOUNTER: (Topic.ENCOUNTERS, Topic.CODING_ACTIONS),
    Table.CLAIM_LEDGER: (Topic.REMITTANCES, Topic.DENIAL_ACTIONS),
}


async def _tables_follow_their_sources(settings: Settings) -> None:
    """Every table entry sits in the changelog partition of the records its stage reads
    with the same key, its key the same bytes: state follows its partition when workers
    join and leave (faust assigns changelog partition N with source partition N)."""
    assert {topic for topics in TABLE_SOURCES.values() for topic in topics} <= {s.source for s in STAGES}
    for table, sources in TABLE_SOURCES.items():
        where: dict[bytes, set[int]] = {}
        for source in sources:
            for record in await read_topic(settings, settings.topic(source)):
                where.setdefault(record.key, set()).add(record.partition)
        entries = await read_topic(settings, table.changelog(settings.app_id))
        shared = [entry for entry in entries if entry.key in where]
        assert entries and len(shared) == len(entries), table  # keys are the sources' keys, not JSON
        misplaced = [entry.key for entry in shared if where[entry.key] != {entry.partition}]
        assert not misplaced, (table, len(misplaced), len(shared))


def _reconcile_cli(settings: Settings) -> tuple[int, dict]:  # type: ignore[type-arg]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")},
           "CLAIMS_KAFKA_BOOTSTRAP": settings.bootstrap_servers, "CLAIMS_TOPIC_PREFIX": settings.topic_prefix,
           "CLAIMS_APP_ID": settings.app_id, "CLAIMS_STATE_DIR": str(settings.state_dir),
           **connection_environment(settings)}
    done = subprocess.run([sys.executable, "-m", "engine", "reconcile", "--grace", "0", "--json"],
                          env=env, capture_output=True, timeout=120)
    return done.returncode, json.loads(done.stdout)


async def _claims_reconcile_exits_1_on_a_lost_encounter(settings: Settings, codec: Codec) -> None:
    """`claims reconcile` as ops run it: 0 on the settled run; 1, naming the encounter,
    once an encounter is on the topic that nothing has processed (no worker runs now)."""
    code, report = _reconcile_cli(settings)
    assert (code, report["ok"], report["lost"]["count"]) == (0, True, 0), report
    stray = make_encounter(encounter_id="ENC-NEVER-PROCESSED")
    producer = make_producer(settings, settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(Topic.ENCOUNTERS), codec.encode(stray),
                                     key=stray.encounter_id.encode())
    finally:
        await producer.stop()
    code, report = _reconcile_cli(settings)
    assert (code, report["ok"], report["lost"]) == (1, False, {"count": 1, "ids": ["ENC-NEVER-PROCESSED"]})
