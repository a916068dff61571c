"""Denial routing: a denial becomes a work item in the queue its CARC calls for
(``engine/reference/data/denial_routing.yaml``). Posting (``engine/posting/ledger.py``) calls it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from engine.model.codes import ORIGINAL
from engine.model.events import (
    Adjustment,
    DenialWorkItem,
    GroupCode,
    Remittance,
    RemittanceOutcome,
)
from engine.runtime.stages import ProcessingError
from engine.wire.topics import Topic

#: CARCs that are cost sharing (deductible, coinsurance, copay) or the contractual fee
#: reduction, never a denial: the default of `not_denials` in denial_routing.yaml.
NOT_DENIALS = frozenset({"1", "2", "3", "45"})


@dataclass(frozen=True)
class Category:
    name: str
    queue: Topic
    suggested_action: str
    recoverable: bool


@dataclass(frozen=True)
class Override:
    carc: str
    category: str
    group_code: str | None = None
    rarc: str | None = None


@dataclass(frozen=True)
class DenialRouting:
    categories: dict[str, Category]
    category_by_carc: dict[str, str]
    overrides: tuple[Override, ...]
    not_denials: frozenset[str]
    default_category: str
    reasons: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> DenialRouting:
        return cls.from_dict(yaml.safe_load(path.read_text()))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DenialRouting:
        categories: dict[str, Category] = {}
        by_carc: dict[str, str] = {}
        for name, spec in doc["categories"].items():
            categories[name] = Category(name, Topic(spec["queue"]), spec["suggested_action"], bool(spec["recoverable"]))
            for carc in spec.get("carcs", []):
                if str(carc) in by_carc:
                    raise ValueError(f"CARC {carc} is in both {by_carc[str(carc)]} and {name}")
                by_carc[str(carc)] = name
        overrides = tuple(
            Override(str(o["carc"]), o["category"], o.get("group_code"), o.get("rarc"))
            for o in doc.get("overrides", [])
        )
        default = doc["default_category"]
        for category in [default, *(o.category for o in overrides)]:
            if category not in categories:
                raise ValueError(f"unknown denial category {category!r}")
        return cls(
            categories=categories,
            category_by_carc=by_carc,
            overrides=overrides,
            not_denials=frozenset(str(c) for c in doc.get("not_denials", [])),
            default_category=default,
            reasons={str(k): str(v) for k, v in doc.get("reasons", {}).items()},
        )

    def queues(self) -> list[Topic]:
        return [c.queue for c in self.categories.values()]

    def deciding_adjustment(self, remit: Remittance) -> Adjustment | None:
        """The first adjustment that is a denial rather than cost sharing or contract."""
        return next((a for a in remit.all_adjustments() if a.carc not in self.not_denials), None)

    def category_for(self, adjustment: Adjustment, rarcs: list[str]) -> Category:
        for rule in self.overrides:
            if rule.carc != adjustment.carc:
                continue
            if rule.group_code is not None and rule.group_code != adjustment.group_code:
                continue
            if rule.rarc is not None and rule.rarc not in rarcs:
                continue
            return self.categories[rule.category]
        name = self.category_by_carc.get(adjustment.carc, self.default_category)
        return self.categories[name]

    def reason(self, group_code: str, carc: str) -> str:
        return f"{group_code}-{carc}: {self.reasons.get(carc, 'see the X12 CARC list')}"


def denied_sum(adjustments: Iterable[tuple[str, str, Decimal]], not_denials: frozenset[str]) -> Decimal:
    """Σ of the (group, CARC, amount) adjustments that are neither patient responsibility
    nor a routine contractual write-off: what a denial costs if nobody works it. Shared by
    the work item, posting's ledger and the run's accounting (which reads decoded dicts)."""
    return sum((amount for group, carc, amount in adjustments if group != GroupCode.PR and carc not in not_denials),
               Decimal("0.00"))


def amount_at_risk(remit: Remittance, routing: DenialRouting) -> Decimal:
    """What the denial costs if nobody works it (``denied_sum`` of all its CAS)."""
    return denied_sum(((a.group_code, a.carc, a.amount) for a in remit.all_adjustments()), routing.not_denials)


def work_item_id(remittance_id: str) -> str:
    return "DN-" + hashlib.blake2b(remittance_id.encode(), digest_size=8).hexdigest().upper()


def is_routable(remit: Remittance, routing: DenialRouting) -> bool:
    """A denial a biller works: an original claim denied in full, or paid in part with
    lines denied (money at risk beyond cost sharing and the contract). A replacement's
    denial is not a new work item: it is the next round of the item whose correction it was."""
    if remit.claim_frequency_code != ORIGINAL:
        return False
    if remit.outcome == RemittanceOutcome.DENIED:
        return True
    return remit.outcome == RemittanceOutcome.PARTIALLY_PAID and amount_at_risk(remit, routing) > 0


def denial_item(remit: Remittance, routing: DenialRouting, now: datetime) -> DenialWorkItem | None:
    """The work item for a denied (or partly denied) original claim; None otherwise."""
    if not is_routable(remit, routing):
        return None
    deciding = routing.deciding_adjustment(remit)
    if deciding is None:
        raise ProcessingError(f"remittance {remit.remittance_id} is denied but carries no denial CARC")
    all_rarcs = [*remit.rarcs, *(r for line in remit.lines for r in line.rarcs)]
    category = routing.category_for(deciding, all_rarcs)
    adjustments = remit.all_adjustments()
    return DenialWorkItem(
        work_item_id=work_item_id(remit.remittance_id),
        claim_id=remit.claim_id,
        remittance_id=remit.remittance_id,
        encounter_id=remit.encounter_id,
        payer_id=remit.payer_id,
        category=category.name,
        queue=category.queue,
        carc=deciding.carc,
        group_code=str(deciding.group_code),
        all_carcs=list(dict.fromkeys(a.carc for a in adjustments)),
        rarcs=list(dict.fromkeys(all_rarcs)),
        reasons=list(dict.fromkeys(routing.reason(str(a.group_code), a.carc) for a in adjustments)),
        amount_at_risk=amount_at_risk(remit, routing),
        billed_amount=remit.billed_amount,
        suggested_action=category.suggested_action,
        recoverable=category.recoverable,
        date_of_service=remit.date_of_service,
        created_at=now,
    )
