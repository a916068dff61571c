"""Claims a clearinghouse would accept, on a real broker: eligibility before the claim,
the scrubber as the clean-claim gate, and the 837P export of the run — validated by
pyx12 and parsed back to the same claims."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from engine.cli.run import RunOptions, run_closed_loop
from engine.model.events import FrontDeskItem, ScrubRejected
from engine.wire.codec import default_codec
from engine.x12.claim_837_read import read_837p
from engine.x12.claim_837_write import write_837p
from engine.x12.export import submitted_claims
from engine.x12.validation import validate_837p
from simulators.ehr import ELIGIBILITY_KINDS, EXPECTED_SCRUB_RULE, SCRUB_KINDS, plan_encounters, practice_for
from simulators.payer.adjudication import PayerBook
from tests.fixtures.kafka import SettingsFactory, on_broker, read_topic

pytestmark = pytest.mark.integration

N_ENCOUNTERS = 400
SEED = 11
RATES = {"bad_rate": 0.05, "resend_rate": 0.02, "lapsed_rate": 0.05, "incomplete_rate": 0.06}

# What X12 carries of a claim (the rest — encounter id, timestamps — stays in Claimflow).
X12_FIELDS = ("patient_control_number", "frequency_code", "original_claim_id", "payer_id", "member_id",
              "billing_npi", "rendering_npi", "date_of_service", "place_of_service", "diagnoses", "total_charge",
              "payer_name", "claim_filing_indicator", "patient_first_name", "patient_last_name", "patient_birth_date",
              "patient_sex")


@on_broker("tansu")
async def test_a_run_with_lapsed_coverage_and_bad_data_holds_rejects_and_exports_clean_x12(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    settings = settings_factory()
    options = RunOptions(encounters=N_ENCOUNTERS, rate=None, seed=SEED, summary_path=None, timeout_s=240, live=False,
                         coder=False, **RATES)
    summary = await run_closed_loop(settings, options, Console(file=io.StringIO()))

    assert summary["settled"] is True
    for name, identity in summary["identities"].items():
        assert identity["holds"], name
    codec = default_codec(settings.schemas_dir)
    book = PayerBook.load(settings.payer_profiles_file)
    planned = plan_encounters(N_ENCOUNTERS, SEED, codec=codec, book=book, practice=practice_for(SEED, book), **RATES)
    kinds = Counter(r.kind for r in planned)
    assert summary["eligibility_held"] == sum(kinds[k] for k in ELIGIBILITY_KINDS) > 0
    assert summary["scrub_rejected"] == sum(kinds[k] for k in SCRUB_KINDS) > 0
    assert summary["claims_built"] == summary["claims_submitted"] + summary["scrub_rejected"]
    assert summary["clean_claim_rate"] == round(summary["claims_submitted"] / summary["claims_built"], 4) < 1
    assert summary["eligibility_requests"] == summary["eligibility_responses"] > 0
    # At most one question per encounter taken on (fewer when the answer cache served a
    # repeat visit; how many depends on timing in a burst, so the unit tests pin the cache).
    assert summary["eligibility_requests"] <= summary["coded"] - summary["duplicates_dropped"]

    # Every held or rejected encounter is findable, with the reason meant for it.
    bootstrap = settings.bootstrap_servers
    held = {codec.decode(r.value, FrontDeskItem).encounter_id: codec.decode(r.value, FrontDeskItem)
            for r in await read_topic(settings, settings.topic("front-desk"))}
    rejected = {codec.decode(r.value, ScrubRejected).encounter_id: codec.decode(r.value, ScrubRejected)
                for r in await read_topic(settings, settings.topic("scrub-rejected"))}
    for record in planned:
        if record.kind in ELIGIBILITY_KINDS:
            assert held[record.encounter_id].reason
        elif record.kind in EXPECTED_SCRUB_RULE:
            rules = {f.rule_id for f in rejected[record.encounter_id].findings}
            assert EXPECTED_SCRUB_RULE[record.kind] in rules, (record.kind, rules)

    # The run's 837P: pyx12 finds no error, and it parses back to the same claims.
    claims = await submitted_claims(settings, bootstrap, codec)
    assert len(claims) == summary["claims_submitted"]
    text = write_837p(claims, settings, control_number=42, created=claims[-1].submitted_at)
    assert validate_837p(text) == []
    back = {c.patient_control_number: c for c in read_837p(text)}
    assert len(back) == len(claims)
    for claim in claims:
        again = back[claim.patient_control_number]
        for name in X12_FIELDS:
            assert getattr(again, name) == getattr(claim, name), (claim.claim_id, name)
        assert [(ln.procedure_code, ln.modifiers, ln.units, ln.charge, ln.dx_pointers, ln.date_of_service)
                for ln in again.lines] == [(ln.procedure_code, ln.modifiers, ln.units, ln.charge, ln.dx_pointers,
                                            ln.date_of_service) for ln in claim.lines]
        assert (again.subscriber.relationship if again.subscriber else "18") == (
            claim.subscriber.relationship if claim.subscriber else "18")

    # The same through the CLI, as a biller runs it.
    out = tmp_path / "run.837"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMS_")}
    env.update(CLAIMS_KAFKA_BOOTSTRAP=bootstrap, CLAIMS_TOPIC_PREFIX=settings.topic_prefix,
               CLAIMS_STATE_DIR=str(settings.state_dir))
    done = subprocess.run([sys.executable, "-m", "engine", "export", "837", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "no errors" in done.stdout
    assert len(read_837p(out.read_text())) == len(claims)
