"""The claim stage's shared fixtures: a clean coded encounter from the practice's own providers."""

from __future__ import annotations

import pytest

from engine.claims.build import ClaimContext
from engine.coding.rules import code_encounter
from engine.model.events import Address, CodedEncounter

HOME = Address("12 OAK ST", "AURORA", "CO", "80012")


@pytest.fixture(scope="module")
def rendering_npi(claim_ctx: ClaimContext) -> str:
    return next(iter(claim_ctx.providers.rendering))


@pytest.fixture
def coded(make_encounter, coding_ref, claim_ctx, rendering_npi, now) -> CodedEncounter:
    """A clean coded encounter from the practice's own providers (providers.csv), Medicare,
    the patient the subscriber."""
    enc = make_encounter(billing_npi=claim_ctx.providers.billing.npi, rendering_npi=rendering_npi,
                         patient_address=HOME)
    (emit,) = code_encounter(enc, b"", coding_ref, now)
    assert emit.topic == "coded"
    return emit.event
