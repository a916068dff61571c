"""``claims ingest 835`` against the broker: the reference data matching needs (our claims by
patient control number, the payer claim control numbers already posted), publishing what
matching made, and the summary an ingest prints (no PHI)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from engine.model.events import ClaimSubmitted, Remittance
from engine.runtime.kafka import read_topic
from engine.runtime.stages import Emit
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic
from engine.x12.export import submitted_claims
from engine.x12.remittance_835_matching import IngestResult, known_claims, pcn_index
from engine.x12.segments import ZERO


async def ingest_reference(settings: Settings, bootstrap: str, codec: Codec
                           ) -> tuple[dict[str, list[ClaimSubmitted]], dict[tuple[str, str], str]]:
    """The claims by patient control number (claims-submitted) and the payer claim control
    numbers already posted (remittances), read concurrently."""
    claims, records = await asyncio.gather(
        submitted_claims(settings, bootstrap, codec),
        read_topic(settings.with_bootstrap(bootstrap), settings.topic(Topic.REMITTANCES), timeout_s=120.0),
    )
    return pcn_index(claims), known_claims(codec.decode(r.value, Remittance) for r in records)


async def publish(settings: Settings, bootstrap: str, codec: Codec, emits: Sequence[Emit]) -> None:
    """Produce ``emits`` and wait until the broker has them all."""
    from engine.runtime.kafka import aiokafka_send, make_producer, produce_emits, started

    async with started(make_producer(settings, bootstrap)) as producer:
        await produce_emits(aiokafka_send(producer), settings, codec, emits)


def totals(results: Sequence[IngestResult]) -> dict[str, object]:
    """The summary of an ingest: counts and money (no PHI)."""
    return {
        "payments": len(results),
        "claim payments": sum(r.payment.claim_payments for r in results),
        "matched": sum(len(r.remittances) for r in results),
        "unapplied": sum(len(r.unapplied) for r in results),
        "total paid": sum((r.payment.payment_amount for r in results), ZERO),
        "PLB total": sum((a.amount for r in results for a in r.payment.provider_adjustments), ZERO),
    }
