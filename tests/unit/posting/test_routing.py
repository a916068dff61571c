"""engine.posting.routing: CARC routing, amount at risk, and the denial work item posting makes of a denial."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
import yaml

from engine.model.events import (
    DenialWorkItem,
    GroupCode,
    Remittance,
    RemittanceOutcome,
)
from engine.posting.routing import DenialRouting, amount_at_risk, denial_item, work_item_id
from engine.runtime.stages import ProcessingError
from simulators.payer.adjudication import NOT_DENIALS
from tests.factories import make_adjustment as adj
from tests.factories import make_remittance
from tests.factories import make_remittance_line as line

CO, PR, OA, PI = GroupCode.CO, GroupCode.PR, GroupCode.OA, GroupCode.PI


@pytest.fixture(scope="module")
def routing_doc(settings) -> dict[str, Any]:
    return yaml.safe_load(settings.denial_routing_file.read_text())


#: MCA01's answers to claim C0000000000000001: balanced, from the lines they are given.
remit = partial(make_remittance, remittance_id="RAAAAAAAAAAAA-1", payer_id="MCA01",
                payer_claim_control_number="MCA01AAAAAAAAAAAA", trace_number="EFT20260322MCA01")


def paid_remit() -> Remittance:
    return remit([line(1, "140.00", [adj(CO, "45", "77.00"), adj(PR, "3", "20.00"), adj(PR, "2", "8.60")]),
                  line(2, "18.00", [adj(CO, "45", "9.90")])], RemittanceOutcome.PAID)


def denied_remit(carc: str = "197", group: GroupCode = CO, rarcs: list[str] = (), **kw: Any) -> Remittance:
    return remit([line(1, "140.00", [adj(group, carc, "140.00", 1)], rarcs=list(rarcs)),
                  line(2, "18.00", [adj(group, carc, "18.00", 1)], rarcs=list(rarcs))],
                 RemittanceOutcome.DENIED, rarcs=list(rarcs), **kw)


# --- the routing table ----------------------------------------------------------------


def test_every_carc_in_the_file_routes_to_its_category(routing, routing_doc):
    pairs = [(str(c), name) for name, spec in routing_doc["categories"].items() for c in spec.get("carcs", [])]
    assert len(pairs) > 30
    for carc, name in pairs:
        for group in (CO, OA, PI):
            category = routing.category_for(adj(group, carc, "10.00"), [])
            assert category.name == name, carc
            spec = routing_doc["categories"][name]
            assert (category.queue, category.suggested_action, category.recoverable) == (
                spec["queue"], spec["suggested_action"], spec["recoverable"])


@pytest.mark.parametrize("rarc", ["M51", "M76", "M20"])
def test_override_16_with_coding_remark_routes_to_coding(routing, rarc):
    assert routing.category_for(adj(CO, "16", "1.00"), [rarc]).name == "coding"
    assert routing.category_for(adj(CO, "16", "1.00"), ["N130", rarc]).name == "coding"


@pytest.mark.parametrize("rarcs", [[], ["MA130"], ["N130", "M15"]])
def test_16_without_coding_remark_is_missing_information(routing, rarcs):
    assert routing.category_for(adj(CO, "16", "1.00"), rarcs).name == "missing-information"


def test_a_coding_remark_does_not_reroute_other_carcs(routing):
    assert routing.category_for(adj(CO, "197", "1.00"), ["M51"]).name == "authorization"


@pytest.mark.parametrize("carc", ["999", "A1", "", "253"])
def test_unknown_carc_routes_to_the_default_category(routing, routing_doc, carc):
    assert routing_doc["default_category"] == "other"
    assert routing.category_for(adj(CO, carc, "1.00"), []).name == "other"


def test_queues_are_declared_topics_carrying_denial_work_items(routing, routing_doc, settings):
    topics = {t["name"]: t for t in yaml.safe_load(settings.topics_file.read_text())["topics"]}
    assert routing.queues() == [spec["queue"] for spec in routing_doc["categories"].values()]
    assert len(set(routing.queues())) == len(routing.queues())
    for queue in routing.queues():
        assert topics[queue]["schema"] == DenialWorkItem.SCHEMA


#: The CARCs of the payer simulator's deterministic rules (simulators/payer/adjudication.py).
RULE_CARCS = ("31", "26", "27", "29", "129", "18", "197", "15")


def test_every_carc_the_payer_simulator_denies_with_has_a_category(routing, book):
    carcs = set(RULE_CARCS)
    for profile in book.payers.values():
        carcs |= {r.carc for c in profile.categories for r in c.reasons}
        carcs |= set(profile.non_covered) | {rule.carc for rule in profile.bundled}
    assert {"16", "96", "204", "97", "234", "119", "50", "4", "22"} <= carcs
    assert not carcs & routing.not_denials
    named = {carc for carc in carcs if carc in routing.category_by_carc}
    assert carcs - named == {"129"}  # prior processing information incorrect: no queue of its own
    assert routing.category_for(adj(CO, "129", "1.00"), []).name == routing.default_category == "other"


def test_the_simulator_and_the_routing_agree_on_what_is_not_a_denial(routing):
    assert routing.not_denials == NOT_DENIALS == {"1", "2", "3", "45"}


def test_from_dict_rejects_a_carc_in_two_categories(routing_doc):
    doc = copy.deepcopy(routing_doc)
    doc["categories"]["bundling"]["carcs"].append("16")
    with pytest.raises(ValueError, match="CARC 16 is in both"):
        DenialRouting.from_dict(doc)


def test_from_dict_rejects_an_unknown_override_category(routing_doc):
    doc = copy.deepcopy(routing_doc)
    doc["overrides"].append({"carc": "97", "rarc": "M80", "category": "no-such-category"})
    with pytest.raises(ValueError, match="no-such-category"):
        DenialRouting.from_dict(doc)


def test_from_dict_rejects_an_unknown_default_category(routing_doc):
    doc = copy.deepcopy(routing_doc)
    doc["default_category"] = "misc"
    with pytest.raises(ValueError, match="misc"):
        DenialRouting.from_dict(doc)


def test_override_on_group_code(routing_doc):
    doc = copy.deepcopy(routing_doc)
    doc["overrides"] = [{"carc": "18", "group_code": "OA", "category": "other"}]
    custom = DenialRouting.from_dict(doc)
    assert custom.category_for(adj(OA, "18", "1.00"), []).name == "other"
    assert custom.category_for(adj(CO, "18", "1.00"), []).name == "duplicate"


# --- deciding adjustment and amount at risk ---------------------------------------------


def test_deciding_adjustment_skips_cost_sharing_and_contractual(routing):
    r = remit([line(1, "140.00", [adj(CO, "45", "40.00"), adj(PR, "1", "50.00"), adj(PR, "2", "5.00"),
                                  adj(PR, "3", "20.00")]),
               line(2, "30.00", [adj(CO, "97", "30.00")]),
               line(3, "20.00", [adj(CO, "96", "20.00")])],
              RemittanceOutcome.PARTIALLY_PAID)
    deciding = routing.deciding_adjustment(r)
    assert (deciding.group_code, deciding.carc) == (CO, "97")


def test_deciding_adjustment_prefers_claim_level(routing):
    r = remit([line(1, "30.00", [adj(CO, "97", "30.00")])], RemittanceOutcome.DENIED,
              adjustments=[adj(OA, "18", "0.00")])
    assert routing.deciding_adjustment(r).carc == "18"


def test_no_deciding_adjustment_on_a_clean_payment(routing):
    assert routing.deciding_adjustment(paid_remit()) is None


def expected_at_risk(r: Remittance, not_denials: set[str]) -> Decimal:
    return sum((a.amount for a in r.all_adjustments() if a.group_code != PR and a.carc not in not_denials),
               Decimal("0.00"))


def test_amount_at_risk_excludes_patient_responsibility_and_contractual(routing, routing_doc):
    r = remit([line(1, "140.00", [adj(CO, "45", "40.00"), adj(PR, "1", "50.00"), adj(PR, "3", "20.00")]),
               line(2, "30.00", [adj(CO, "97", "30.00")]),
               line(3, "25.00", [adj(PR, "204", "25.00")]),
               line(4, "12.00", [adj(OA, "18", "12.00")])],
              RemittanceOutcome.PARTIALLY_PAID)
    at_risk = amount_at_risk(r, routing)
    assert at_risk == Decimal("42.00")  # CO-97 30 + OA-18 12
    assert at_risk == expected_at_risk(r, {str(c) for c in routing_doc["not_denials"]})


def test_amount_at_risk_of_a_full_denial_is_billed_minus_paid_minus_patient_share(routing):
    r = denied_remit("50")
    assert amount_at_risk(r, routing) == r.billed_amount - r.paid_amount - r.patient_responsibility


# --- the work item -----------------------------------------------------------------------


@pytest.mark.parametrize("outcome", [RemittanceOutcome.PAID, RemittanceOutcome.REVERSED])
def test_no_work_item_unless_the_claim_is_denied(routing, now, outcome):
    partial = remit([line(1, "140.00", [adj(CO, "45", "40.00")]), line(2, "30.00", [adj(CO, "97", "30.00")])],
                    outcome)
    assert denial_item(partial, routing, now) is None
    assert denial_item(dataclasses.replace(paid_remit(), outcome=outcome), routing, now) is None


def test_a_line_denied_on_a_paid_claim_is_a_work_item_for_that_line(routing, now):
    partial = remit([line(1, "140.00", [adj(CO, "45", "40.00")]), line(2, "30.00", [adj(CO, "97", "30.00")])],
                    RemittanceOutcome.PARTIALLY_PAID)
    item = denial_item(partial, routing, now)
    assert item is not None
    assert (item.queue, item.carc, item.amount_at_risk) == ("denials.bundling", "97", Decimal("30.00"))


def test_partly_paid_with_only_cost_sharing_is_no_work_item(routing, now):
    shared = remit([line(1, "140.00", [adj(CO, "45", "40.00"), adj(PR, "2", "20.00")])],
                   RemittanceOutcome.PARTIALLY_PAID)
    assert denial_item(shared, routing, now) is None


@pytest.mark.parametrize("frequency", ["7", "8"])
def test_a_replacement_denied_again_is_not_a_new_work_item(routing, now, frequency):
    """Its denial is the next round of the item whose correction it was (engine.denials.work_items)."""
    again = dataclasses.replace(denied_remit("50"), claim_frequency_code=frequency)
    assert denial_item(again, routing, now) is None


def test_a_denied_remittance_becomes_a_work_item_in_its_queue(routing, routing_doc, codec, now):
    r = denied_remit("197", rarcs=["N54"])
    item = denial_item(r, routing, now)
    assert isinstance(item, DenialWorkItem)
    spec = routing_doc["categories"]["authorization"]
    assert (item.category, item.queue, item.carc, item.group_code) == ("authorization", spec["queue"], "197", "CO")
    assert item.queue == "denials.authorization"
    assert (item.suggested_action, item.recoverable) == (spec["suggested_action"], spec["recoverable"])
    assert (item.claim_id, item.remittance_id, item.encounter_id, item.payer_id, item.date_of_service) == (
        r.claim_id, r.remittance_id, r.encounter_id, r.payer_id, r.date_of_service)
    assert item.all_carcs == ["197"]
    assert item.rarcs == ["N54"]  # claim and line remarks, de-duplicated
    assert item.reasons == [f"CO-197: {routing_doc['reasons']['197']}"]
    assert item.billed_amount == r.billed_amount
    assert item.amount_at_risk == r.billed_amount - r.paid_amount - r.patient_responsibility == Decimal("158.00")
    assert item.created_at == now
    assert item.work_item_id == work_item_id(r.remittance_id)
    assert codec.decode(codec.encode(item), DenialWorkItem) == item


@pytest.mark.parametrize("carc, group, queue", [
    ("31", CO, "denials.eligibility"), ("29", CO, "denials.timely-filing"), ("18", OA, "denials.duplicate"),
    ("96", CO, "denials.non-covered"), ("97", CO, "denials.bundling"), ("50", CO, "denials.medical-necessity"),
    ("119", CO, "denials.benefit-maximum"), ("22", OA, "denials.coordination-of-benefits"),
    ("16", CO, "denials.missing-information"), ("4", CO, "denials.coding"), ("129", CO, "denials.other"),
])
def test_each_denial_lands_in_its_queue(routing, now, carc, group, queue):
    item = denial_item(denied_remit(carc, group), routing, now)
    assert (item.queue, item.carc, item.group_code) == (queue, carc, str(group))


def test_line_level_coding_remark_reroutes_carc_16(routing, now):
    r = remit([line(1, "140.00", [adj(CO, "16", "140.00")], rarcs=["M51"])], RemittanceOutcome.DENIED)
    assert r.rarcs == []
    item = denial_item(r, routing, now)
    assert (item.queue, item.rarcs) == ("denials.coding", ["M51"])


def test_all_carcs_and_reasons_in_order_without_repeats(routing, now):
    r = remit([line(1, "140.00", [adj(OA, "18", "140.00")]), line(2, "18.00", [adj(CO, "29", "18.00")]),
               line(3, "18.00", [adj(OA, "18", "18.00")])], RemittanceOutcome.DENIED)
    item = denial_item(r, routing, now)
    assert (item.carc, item.group_code, item.category) == ("18", "OA", "duplicate")
    assert item.all_carcs == ["18", "29"]
    assert [reason.split(":")[0] for reason in item.reasons] == ["OA-18", "CO-29"]


def test_unknown_reason_text_falls_back(routing):
    assert routing.reason("CO", "999") == "CO-999: see the X12 CARC list"


def test_work_item_id_is_deterministic_from_the_remittance_id(routing, now):
    first = denial_item(denied_remit(), routing, now)
    again = denial_item(denied_remit(), routing, datetime(2027, 1, 1, tzinfo=UTC))
    other = denial_item(denied_remit(remittance_id="RBBBBBBBBBBBB-1"), routing, now)
    assert first.work_item_id == again.work_item_id == work_item_id("RAAAAAAAAAAAA-1")
    assert first.work_item_id != other.work_item_id
    assert first.work_item_id.startswith("DN-") and len(first.work_item_id) == 19


def test_denied_without_a_denial_carc_is_a_processing_error(routing, now):
    r = dataclasses.replace(paid_remit(), outcome=RemittanceOutcome.DENIED)
    with pytest.raises(ProcessingError, match="no denial CARC"):
        denial_item(r, routing, now)
