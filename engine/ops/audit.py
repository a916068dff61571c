"""``claims reconcile``: the topics audited end to end, by distinct ids. Every encounter
must have ended somewhere (a claim, a work queue, the front desk, the dead-letter topic),
nothing may have been billed, posted or queued twice, and the accounting identities must
hold; a redelivered output (recognised by its source header) is a figure, not an error."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from engine.ops.reconciliation import ReadBack, Tally, summarize
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic

#: An encounter without an outcome this long after it was sent is stuck or lost, not in flight.
DEFAULT_GRACE_S = 300.0
#: The most ids each finding lists (the counts are whole).
IDS_LISTED = 20


@dataclass(frozen=True)
class Audit:
    encounters: int  # distinct encounter ids
    resent: int  # encounter records beyond the first of each id (EHR resends)
    redelivered: dict[str, int]  # outputs seen again from the same source record, per topic
    in_flight: list[str]  # no outcome yet, younger than the grace period
    lost: list[str]  # no outcome, older than the grace period: stuck or lost
    original_claims_twice: list[str]  # a claim id submitted as an original from two sources
    #: The source records (``topic:partition:offset:n``) of each claim in ``original_claims_twice``.
    original_claims_twice_sources: dict[str, list[str]]
    encounters_billed_twice: list[str]  # an encounter with two original claim ids
    remittances_posted_twice: list[str]
    work_items_twice: list[str]
    statements_twice: list[str]
    broken_identities: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return (len(self.original_claims_twice) + len(self.encounters_billed_twice)
                + len(self.remittances_posted_twice) + len(self.work_items_twice) + len(self.statements_twice))

    @property
    def ok(self) -> bool:
        """No gap, no duplicate, and (once nothing is in flight) every identity holds."""
        return not self.lost and not self.duplicates and (bool(self.in_flight) or not self.broken_identities)

    def report(self) -> dict[str, Any]:
        """The audit as JSON: counts, and the first ids of each finding (ids carry no PHI)."""
        def ids(values: list[str]) -> dict[str, Any]:
            return {"count": len(values), "ids": sorted(values)[:IDS_LISTED]}

        return {
            "ok": self.ok,
            "encounters": self.encounters,
            "resent": self.resent,
            "redelivered": sum(self.redelivered.values()),
            "redelivered_by_topic": self.redelivered,
            "in_flight": ids(self.in_flight),
            "lost": ids(self.lost),
            "duplicates": self.duplicates,
            "original_claims_twice": ids(self.original_claims_twice),
            "original_claims_twice_sources": {claim_id: self.original_claims_twice_sources.get(claim_id, [])
                                              for claim_id in sorted(self.original_claims_twice)[:IDS_LISTED]},
            "encounters_billed_twice": ids(self.encounters_billed_twice),
            "remittances_posted_twice": ids(self.remittances_posted_twice),
            "work_items_twice": ids(self.work_items_twice),
            "statements_twice": ids(self.statements_twice),
            "broken_identities": self.broken_identities,
        }


def audit(tally: Tally, settings: Settings, now_ms: int, grace_s: float = DEFAULT_GRACE_S) -> Audit:
    """What the tally of every record on the topics says about each id."""
    no_outcome = [e for e in tally.encounter_seen_ms if not tally.outcomes.get(e)]
    cutoff = now_ms - grace_s * 1000
    summary = summarize(tally, settings, 1.0)
    return Audit(
        encounters=len(tally.encounter_seen_ms),
        resent=tally.records[Topic.ENCOUNTERS] - len(tally.encounter_seen_ms),
        redelivered=dict(sorted(tally.redelivered.items())),
        in_flight=[e for e in no_outcome if tally.encounter_seen_ms[e] > cutoff],
        lost=[e for e in no_outcome if tally.encounter_seen_ms[e] <= cutoff],
        original_claims_twice=sorted(set(tally.repeated_original_claims)),
        original_claims_twice_sources={claim_id: tally.original_sources.get(claim_id, [])
                                       for claim_id in set(tally.repeated_original_claims)},
        encounters_billed_twice=sorted(e for e, claims in tally.originals_by_encounter.items() if len(claims) > 1),
        remittances_posted_twice=sorted(set(tally.remittances_posted_twice)),
        work_items_twice=sorted(set(tally.repeated_work_items)),
        statements_twice=sorted(set(tally.repeated_statements)),
        broken_identities=[name for name, i in summary["identities"].items() if not i["holds"]],
    )


async def reconcile(settings: Settings, bootstrap_servers: str, codec: Codec, grace_s: float = DEFAULT_GRACE_S,
                    timeout_s: float = 120.0) -> Audit:
    """Read every counted topic from its start to its end now, and audit it."""
    readback = ReadBack(settings, bootstrap_servers, codec, Topic.denial_queues())
    await readback.start()
    try:
        tally = await readback.read_all(timeout_s)
    finally:
        await readback.stop()
    return audit(tally, settings, int(time.time() * 1000), grace_s)
