"""Master data the claim stage reads: the practice's providers and the payers it bills
(``engine/reference/data/providers.csv``, ``engine/reference/data/payers.csv``; replace them with your own)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.model.events import Address, Provider


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="") as handle:
        yield from csv.DictReader(line for line in handle if not line.startswith("#"))


@dataclass(frozen=True)
class Providers:
    """The practice's billing provider and its rendering providers by NPI."""

    billing: Provider
    rendering: dict[str, Provider]

    @classmethod
    def load(cls, path: Path) -> Providers:
        billing: Provider | None = None
        rendering: dict[str, Provider] = {}
        for row in _rows(path):
            provider = Provider(
                npi=row["npi"], entity_type=row["entity_type"], name=row["name"], first_name=row["first_name"],
                taxonomy=row["taxonomy"], tax_id=row["tax_id"],
                address=Address(row["address_line1"], row["city"], row["state"], row["postal_code"]),
            )
            if row["role"] == "billing":
                billing = provider
            else:
                rendering[provider.npi] = provider
        if billing is None:
            raise ValueError(f"{path}: no billing provider row")
        return cls(billing, rendering)


@dataclass(frozen=True)
class PayerInfo:
    payer_id: str
    name: str
    claim_filing_indicator: str  # SBR09
    timely_filing_days: int
    x12_payer_id: str  # NM109 of loop 2010BB
    appeal_days: int | None = None  # None: not in the file (engine.denials.work_items.DEFAULT_APPEAL_DAYS)


def load_payers(path: Path) -> dict[str, PayerInfo]:
    return {
        row["payer_id"]: PayerInfo(row["payer_id"], row["name"], row["claim_filing_indicator"],
                                   int(row["timely_filing_days"]), row["x12_payer_id"],
                                   int(row["appeal_days"]) if row.get("appeal_days") else None)
        for row in _rows(path)
    }


def appeal_days_by_payer(payers: dict[str, PayerInfo]) -> dict[str, int]:
    """Each payer's appeal window in days, where the payer file gives one."""
    return {p.payer_id: p.appeal_days for p in payers.values() if p.appeal_days is not None}
