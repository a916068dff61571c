"""Which remittances a period's 835 file holds (``claims export 835``): the remittances topic
read back, filtered by payment date and payer, each remittance once, with the claims they
answer. Rules: docs/x12.md, "835 files"."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

from engine.model.codes import ClaimStatusCode
from engine.model.events import ClaimSubmitted, Remittance
from engine.runtime.kafka import read_topic
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic
from engine.x12.export import submitted_claims


def _export_order(r: Remittance) -> tuple[date, str, str, datetime, bool, str, str]:
    """Payment date, payer, trace; a reversal before the payment of what replaced it."""
    return (r.payment_date, r.payer_id, r.trace_number, r.adjudicated_at,
            r.claim_status_code != ClaimStatusCode.REVERSAL, r.claim_id, r.remittance_id)


def select_remittances(remittances: Iterable[Remittance], start: date | None = None, end: date | None = None,
                       payer: str | None = None) -> list[Remittance]:
    """Remittances paid in [start, end] (either open) by ``payer`` (None: any), each
    remittance id once (the first seen), in export order."""
    chosen: dict[str, Remittance] = {}
    for r in remittances:
        if (start is not None and r.payment_date < start) or (end is not None and r.payment_date > end):
            continue
        if payer is not None and r.payer_id != payer:
            continue
        chosen.setdefault(r.remittance_id, r)
    return sorted(chosen.values(), key=_export_order)


async def remittances_for_period(settings: Settings, bootstrap: str, codec: Codec, start: date | None,
                                 end: date | None, payer: str | None) -> list[Remittance]:
    """Every remittance on the ``remittances`` topic paid in [start, end] by ``payer``."""
    records = await read_topic(settings.with_bootstrap(bootstrap), settings.topic(Topic.REMITTANCES), timeout_s=120.0)
    return select_remittances((codec.decode(r.value, Remittance) for r in records), start, end, payer)


async def claims_answered(settings: Settings, bootstrap: str, codec: Codec,
                          remittances: Sequence[Remittance]) -> dict[str, ClaimSubmitted]:
    """The submitted claims the remittances answer, by claim id (a claim past the topic's
    retention is missing)."""
    wanted = {r.claim_id for r in remittances}
    return {c.claim_id: c for c in await submitted_claims(settings, bootstrap, codec) if c.claim_id in wanted}
