"""The run's accounting, from what is actually on the topics (never the producers'
own tallies): counts per stage, the identities that prove nothing was lost, and the
summary ``claims run`` prints and writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiokafka import TopicPartition

from engine.coding.review import VERDICTS
from engine.denials.work_items import FoldedQueues, WorkItemAccounting, fold_work_items, work_item_accounting
from engine.model.events import DenialAction, DenialWorkItem, Remittance
from engine.ops.metrics import Latencies, Outstanding
from engine.posting.routing import DenialRouting, denied_sum
from engine.runtime.kafka import assign_all, make_consumer, read_to_highwater
from engine.runtime.stages import SOURCE_HEADER
from engine.settings import Settings
from engine.wire.codec import Codec, UndecodableEvent, from_record
from engine.wire.topics import Topic

COUNTED_TOPICS = (
    Topic.ENCOUNTERS,
    Topic.CODED,
    Topic.CODING_REVIEW,
    Topic.CODING_ACTIONS,
    Topic.ELIGIBILITY_REQUESTS,
    Topic.ELIGIBILITY_RESPONSES,
    Topic.FRONT_DESK,
    Topic.SCRUB_REJECTED,
    Topic.CLAIMS_SUBMITTED,
    Topic.DUPLICATES,
    Topic.REMITTANCES,
    Topic.CLAIM_STATUS,
    Topic.STATEMENTS,
    Topic.DEAD_LETTER,
    Topic.DENIAL_ACTIONS,
    Topic.PAYER_CLAIMS,  # counted for the payer group's lag (engine.ops.monitor), not in the summary
)
#: The money a payer's remittances carry, summed per payer for the ops figures.
PAYER_AMOUNTS = ("billed", "allowed", "paid", "patient_responsibility")
ENGINE_VERDICTS = frozenset(str(verdict) for verdict in VERDICTS)


@dataclass
class Tally:
    """Counts of records read back, per logical topic, plus what needs the payload."""

    records: Counter[str] = field(default_factory=Counter)
    dead_letters_by_source: Counter[str] = field(default_factory=Counter)
    denials_by_queue: Counter[str] = field(default_factory=Counter)
    coded_after_review: int = 0
    review_opened: int = 0  # first revisions of error items
    review_revisions: int = 0  # later revisions: a correction that still failed
    audit_sampled: int = 0
    coding_actions: Counter[str] = field(default_factory=Counter)
    #: Work item ids opened (revision 1, errors), drawn for audit, and acted on by a
    #: person (or the coder simulator) at revision 1: the coder has seen every item
    #: when the last covers the first two (ids, not records: an EHR resend re-opens).
    review_ids: set[str] = field(default_factory=set)
    audit_ids: set[str] = field(default_factory=set)
    items_acted_on: set[str] = field(default_factory=set)
    findings_by_rule: Counter[str] = field(default_factory=Counter)
    scrub_findings_by_rule: Counter[str] = field(default_factory=Counter)
    eligibility_by_status: Counter[str] = field(default_factory=Counter)
    warnings_by_rule: Counter[str] = field(default_factory=Counter)
    claim_ids: set[str] = field(default_factory=set)
    repeated_claim_ids: int = 0
    billed_amount: Decimal = Decimal("0.00")
    paid_amount: Decimal = Decimal("0.00")
    patient_responsibility: Decimal = Decimal("0.00")
    statement_amount: Decimal = Decimal("0.00")
    at_risk_amount: Decimal = Decimal("0.00")
    unreadable: int = 0
    #: CARCs that are cost sharing or contractual, never a denial (denial_routing.yaml).
    not_denials: frozenset[str] = frozenset({"1", "2", "3", "45"})
    remittance_ids: set[str] = field(default_factory=set)
    repeated_remittances: int = 0
    #: Claim-status records that posted a remittance (its count of remittances grew), by
    #: state: a biller's write-off also republishes the status, and is not a posting.
    posted_states: Counter[str] = field(default_factory=Counter)
    remittances_posted: dict[str, int] = field(default_factory=dict)
    #: Claims submitted by CLM05-3 frequency: 1 original, 7 replacement, 8 void.
    submitted_by_frequency: Counter[str] = field(default_factory=Counter)
    #: Remittances that make a denial work item: originals denied in full or in part.
    denials_routed: int = 0
    #: What the work-item fold needs, decoded once: the items, the actions, the answers
    #: to replacement and void claims with the reversals they caused, and what each
    #: denying remittance paid.
    work_items: list[DenialWorkItem] = field(default_factory=list)
    denial_actions: list[DenialAction] = field(default_factory=list)
    successor_remittances: list[Remittance] = field(default_factory=list)
    paid_by_denying_remittance: dict[str, Decimal] = field(default_factory=dict)
    denial_action_kinds: Counter[str] = field(default_factory=Counter)
    allowed_amount: Decimal = Decimal("0.00")
    #: payer → billed / allowed / paid / patient_responsibility, from its remittances.
    amounts_by_payer: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    #: For the ops figures (engine.ops.metrics): each encounter followed by record time, and
    #: each claim's open balance since its submission.
    latency: Latencies = field(default_factory=Latencies)
    outstanding: dict[str, Outstanding] = field(default_factory=dict)
    _folded: tuple[tuple[int, int, int], FoldedQueues] | None = field(default=None, repr=False)
    remittances_by_status: Counter[str] = field(default_factory=Counter)
    voids_reversed: int = 0
    voids_submitted: int = 0
    unbalanced_remittances: int = 0
    #: First-pass (original claims, not reversals): per payer, claims answered and denied
    #: (any denial, claim or line), and the CARC that decided each denial.
    first_pass_by_payer: Counter[str] = field(default_factory=Counter)
    first_pass_denied_by_payer: Counter[str] = field(default_factory=Counter)
    deciding_carcs_by_payer: dict[str, Counter[str]] = field(default_factory=dict)
    #: For the accumulator figure, in memory only (never printed): claim → member and
    #: date, and each first-pass answer's paid and allowed.
    claim_member: dict[str, tuple[str, str, Any]] = field(default_factory=dict)
    first_pass_amounts: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    #: Outputs recognised by their source header (``delivery.SOURCE_HEADER``): one seen
    #: again is a redelivery (a batch processed again after a crash), counted here only.
    sources_seen: set[tuple[str, bytes]] = field(default_factory=set)
    redelivered: Counter[str] = field(default_factory=Counter)
    keys_seen: set[tuple[str, bytes | None]] = field(default_factory=set)
    #: For the end-to-end audit (``audit``): each encounter id read, with its record time,
    #: and what ended each (terminal outcomes by encounter id).
    encounter_seen_ms: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, set[str]] = field(default_factory=dict)
    originals_by_encounter: dict[str, set[str]] = field(default_factory=dict)
    repeated_original_claims: list[str] = field(default_factory=list)
    #: Where each original claim came from (its first source header), and for a claim
    #: submitted twice every source, so it is traced to the records that made it.
    first_original_source: dict[str, str] = field(default_factory=dict)
    original_sources: dict[str, list[str]] = field(default_factory=dict)
    _source: bytes | None = field(default=None, init=False, repr=False, compare=False)  # of the record in ``add``
    postings_by_claim: dict[str, set[str]] = field(default_factory=dict)
    remittances_posted_twice: list[str] = field(default_factory=list)
    work_item_ids: set[str] = field(default_factory=set)
    repeated_work_items: list[str] = field(default_factory=list)
    statement_ids: set[str] = field(default_factory=set)
    coding_action_ids: set[str] = field(default_factory=set)
    repeated_statements: list[str] = field(default_factory=list)

    def add(self, topic: Topic, key: bytes | None, value: bytes | None, codec: Codec,
            timestamp_ms: int | None = None, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        topic = Topic(topic)  # a plain name from a caller that has one (tests, replays)
        source = next((v for k, v in headers if k == SOURCE_HEADER), None)
        if source is not None:
            if (topic, source) in self.sources_seen:
                self.redelivered[topic] += 1
                return
            self.sources_seen.add((topic, source))
        self._source = source
        if topic in _ONE_PER_KEY:  # one 270 and one 271 per encounter: a second is a redelivered request's
            if (topic, key) in self.keys_seen:
                self.redelivered[topic] += 1
                return
            self.keys_seen.add((topic, key))
        self.records[topic] += 1
        if topic in _ENDED_BY_KEY:
            self._ended((key or b"").decode(errors="replace"), _ENDED_BY_KEY[topic])
        if topic is Topic.ENCOUNTERS and timestamp_ms is not None:
            self.encounter_seen_ms.setdefault((key or b"").decode(errors="replace"), timestamp_ms)
        if timestamp_ms is not None:
            self._time(topic, (key or b"").decode(errors="replace"), timestamp_ms)
        if topic in DENIAL_QUEUES:
            self._work_item(topic, value, codec)
            return
        counter = _COUNTERS.get(topic)
        if counter is None:
            return
        if counter.decodes_event:
            event = self._event(codec, value, counter.decodes_event)
            if event is not None:
                counter.count(self, event, key, timestamp_ms)
        else:
            record = self._record(codec, value)
            if record is not None:
                counter.count(self, record, key, timestamp_ms)

    def _ended(self, encounter_id: str, outcome: str) -> None:
        self.outcomes.setdefault(encounter_id, set()).add(outcome)

    def _work_item(self, topic: Topic, value: bytes | None, codec: Codec) -> None:
        self.denials_by_queue[topic.queue_name] += 1
        item = self._event(codec, value, DenialWorkItem)
        if item is not None:
            if item.work_item_id in self.work_item_ids:
                self.repeated_work_items.append(item.work_item_id)
            self.work_item_ids.add(item.work_item_id)
            self.at_risk_amount += item.amount_at_risk
            self.work_items.append(item)

    def _claim_submitted(self, record: dict[str, Any], key: bytes | None, timestamp_ms: int | None) -> None:
        claim_id = (key or b"").decode()
        source = self._source.decode(errors="replace") if self._source is not None else "no source header"
        if claim_id in self.claim_ids:
            self.repeated_claim_ids += 1
            if record["frequency_code"] == "1":
                self.repeated_original_claims.append(claim_id)
                first = self.first_original_source.get(claim_id)
                self.original_sources.setdefault(claim_id, [first] if first is not None else []).append(source)
        self.claim_ids.add(claim_id)
        if record["frequency_code"] == "1":
            self.first_original_source.setdefault(claim_id, source)
            self._ended(record["encounter_id"], "claim submitted")
            self.originals_by_encounter.setdefault(record["encounter_id"], set()).add(claim_id)
        self.voids_submitted += record["frequency_code"] == "8"
        self.submitted_by_frequency[record["frequency_code"]] += 1
        if timestamp_ms is not None:
            if record["frequency_code"] == "1":  # a replacement's hops would count a biller's days
                self.latency.claim_submitted(claim_id, record["encounter_id"], timestamp_ms)
            if record["frequency_code"] != "8":  # a void owes nothing: it takes a payment back
                claim = self.outstanding.setdefault(claim_id, Outstanding())
                claim.submitted_ms, claim.billed = timestamp_ms, record["total_charge"]
        self.claim_member[claim_id] = (record["payer_id"], record["member_id"], record["date_of_service"])

    def _claim_status(self, record: dict[str, Any], key: bytes | None, timestamp_ms: int | None) -> None:
        posted = record["remittances_posted"]
        if posted > self.remittances_posted.get(record["claim_id"], 0) and record["remittance_id"]:
            seen = self.postings_by_claim.setdefault(record["claim_id"], set())
            if record["remittance_id"] in seen:  # the ledger took one remittance twice
                self.remittances_posted_twice.append(record["remittance_id"])
            seen.add(record["remittance_id"])
        if posted > self.remittances_posted.get(record["claim_id"], 0):
            self.remittances_posted[record["claim_id"]] = posted
            self.posted_states[record["status"]] += 1
            if timestamp_ms is not None:
                self.latency.posted(record["claim_id"], timestamp_ms)
        if posted and record["balance"] is not None:  # the ledger's balance, after a posting
            self.outstanding.setdefault(record["claim_id"], Outstanding()).balance = record["balance"]

    def _denial_action(self, action: DenialAction, key: bytes | None, timestamp_ms: int | None) -> None:
        self.denial_actions.append(action)
        self.denial_action_kinds[str(action.action)] += 1

    def _statement(self, record: dict[str, Any], key: bytes | None, timestamp_ms: int | None) -> None:
        if record["statement_id"] in self.statement_ids:  # the patient billed twice: counted, and flagged
            self.repeated_statements.append(record["statement_id"])
        self.statement_ids.add(record["statement_id"])
        self.statement_amount += record["amount"]

    def _coded(self, record: dict[str, Any], key: bytes | None, timestamp_ms: int | None) -> None:
        self.coded_after_review += record.get("review_work_item_id") is not None
        self.warnings_by_rule.update({f["rule_id"] for f in record["findings"]})

    def _coding_review(self, record: dict[str, Any], key: bytes | None, timestamp_ms: int | None) -> None:
        if not record["is_audit"]:
            self._ended(record["encounter_id"], "coding review")
        if record["is_audit"]:
            self.audit_sampled += 1
            self.audit_ids.add(record["work_item_id"])
        elif record["revision"] > 1:
            self.review_revisions += 1
        else:
            self.review_opened += 1
            self.review_ids.add(record["work_item_id"])
            # Items per rule: an item with two findings of one rule counts once.
            self.findings_by_rule.update({f["rule_id"] for f in record["findings"] if f["severity"] == "ERROR"})

    def _coding_action(self, record: dict[str, Any], key: bytes | None, timestamp_ms: int | None) -> None:
        if record["action_id"] in self.coding_action_ids:  # the coder answered a redelivered item again
            self.records[Topic.CODING_ACTIONS] -= 1
            self.redelivered[Topic.CODING_ACTIONS] += 1
            return
        self.coding_action_ids.add(record["action_id"])
        self.coding_actions[record["action"]] += 1
        if record["revision"] == 1 and record["action"] not in ENGINE_VERDICTS:
            self.items_acted_on.add(record["work_item_id"])

    def _scrub_rejected(self, record: dict[str, Any], key: bytes | None, timestamp_ms: int | None) -> None:
        self._ended(record["encounter_id"], "scrub rejected")
        self.scrub_findings_by_rule.update({f["rule_id"] for f in record["findings"] if f["severity"] == "ERROR"})

    def _eligibility_response(self, record: dict[str, Any], key: bytes | None, timestamp_ms: int | None) -> None:
        self.eligibility_by_status[record["status"]] += 1

    def _dead_letter(self, record: dict[str, Any], key: bytes | None, timestamp_ms: int | None) -> None:
        self.dead_letters_by_source[record["source_topic"]] += 1
        if record["source_key"] is not None:  # the stages that read by encounter id key their records by it
            self._ended(record["source_key"].decode(errors="replace"), "dead-lettered")

    def _remittance(self, r: dict[str, Any], key: bytes | None, timestamp_ms: int | None) -> None:
        if r["remittance_id"] in self.remittance_ids:  # delivered twice (at-least-once): counted once
            self.repeated_remittances += 1
            return
        self.remittance_ids.add(r["remittance_id"])
        status = r["claim_status_code"]
        if r["claim_frequency_code"] != "1" or status == "22":
            # Answers to replacements and voids, and the reversals that say what they replaced.
            self.successor_remittances.append(from_record(Remittance, r))
        elif self._routable(r):
            self.denials_routed += 1
            self.paid_by_denying_remittance[r["remittance_id"]] = r["paid_amount"]
        self.remittances_by_status[status] += 1
        self.billed_amount += r["billed_amount"]
        self.allowed_amount += r["allowed_amount"]
        by_payer = self.amounts_by_payer.setdefault(r["payer_id"], dict.fromkeys(PAYER_AMOUNTS, Decimal("0.00")))
        for kind in PAYER_AMOUNTS:
            by_payer[kind] += r[f"{kind}_amount" if kind != "patient_responsibility" else kind]
        self.paid_amount += r["paid_amount"]
        self.patient_responsibility += r["patient_responsibility"]
        self.unbalanced_remittances += not balances(r)
        if status == "22":
            self.voids_reversed += r["claim_frequency_code"] == "8"
            return
        if r["claim_frequency_code"] != "1":
            return
        payer = r["payer_id"]
        self.first_pass_by_payer[payer] += 1
        adjustments = [*r["adjustments"], *(a for line in r["lines"] for a in line["adjustments"])]
        deciding = next((a for a in adjustments if a["group_code"] != "PR" and a["carc"] not in self.not_denials), None)
        if deciding is not None:
            self.first_pass_denied_by_payer[payer] += 1
            self.deciding_carcs_by_payer.setdefault(payer, Counter())[deciding["carc"]] += 1
        self.first_pass_amounts[r["claim_id"]] = (r["paid_amount"], r["allowed_amount"])

    def _time(self, topic: Topic, key: str, ts: int) -> None:
        """Record times the latency figures follow (keys: encounter id, then claim id)."""
        if topic is Topic.ENCOUNTERS:
            self.latency.encounter(key, ts)
        elif topic in (Topic.CODED, Topic.CODING_REVIEW):
            self.latency.coded(key, ts, review=topic is Topic.CODING_REVIEW)
        elif topic is Topic.REMITTANCES:
            self.latency.remitted(key, ts)

    def _routable(self, r: dict[str, Any]) -> bool:
        """``engine.posting.routing.is_routable`` on the decoded record (an original claim)."""
        if r["outcome"] == "DENIED":
            return True
        adjustments = [*r["adjustments"], *(a for line in r["lines"] for a in line["adjustments"])]
        return r["outcome"] == "PARTIALLY_PAID" and denied_sum(
            ((a["group_code"], a["carc"], a["amount"]) for a in adjustments), self.not_denials) > 0

    def folded(self) -> FoldedQueues:
        """The work items folded with their actions and answers, again only when one of
        those changed (the run's watch loop and the dashboard ask many times a second)."""
        key = (len(self.work_items), len(self.denial_actions), len(self.successor_remittances))
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, fold_work_items(self.work_items, self.denial_actions, self.successor_remittances,
                                                 self.paid_by_denying_remittance))
        return self._folded[1]

    def work_item_accounting(self) -> WorkItemAccounting:
        return work_item_accounting(state for _, state in self.folded().items)

    def _event(self, codec: Codec, value: bytes | None, event_type: type[Any]) -> Any:
        try:
            return codec.decode(value, event_type)
        except UndecodableEvent:
            self.unreadable += 1
            return None

    def _record(self, codec: Codec, value: bytes | None) -> dict[str, Any] | None:
        try:
            return codec.decode_record(value)[1]
        except UndecodableEvent:
            self.unreadable += 1
            return None


@dataclass(frozen=True)
class _Counter:
    """What the tally does with one topic's records: ``count`` gets the decoded record
    (a dict), or the typed event when ``decodes_event`` names one."""

    count: Callable[[Tally, Any, bytes | None, int | None], None]
    decodes_event: type[Any] | None = None


_COUNTERS: dict[Topic, _Counter] = {
    Topic.CLAIMS_SUBMITTED: _Counter(Tally._claim_submitted),
    Topic.CLAIM_STATUS: _Counter(Tally._claim_status),
    Topic.DENIAL_ACTIONS: _Counter(Tally._denial_action, DenialAction),
    Topic.REMITTANCES: _Counter(Tally._remittance),
    Topic.STATEMENTS: _Counter(Tally._statement),
    Topic.CODED: _Counter(Tally._coded),
    Topic.CODING_REVIEW: _Counter(Tally._coding_review),
    Topic.CODING_ACTIONS: _Counter(Tally._coding_action),
    Topic.SCRUB_REJECTED: _Counter(Tally._scrub_rejected),
    Topic.ELIGIBILITY_RESPONSES: _Counter(Tally._eligibility_response),
    Topic.DEAD_LETTER: _Counter(Tally._dead_letter),
}
DENIAL_QUEUES = frozenset(Topic.denial_queues())
#: Topics with one record per key (encounter id): the payer answers a redelivered 270 again.
_ONE_PER_KEY = frozenset({Topic.ELIGIBILITY_REQUESTS, Topic.ELIGIBILITY_RESPONSES})
#: Topics keyed by encounter id whose every record ends its encounter's way through
_ENDED_BY_KEY = {Topic.FRONT_DESK: "eligibility held"}  # not DUPLICATES: a resend ends, not its original


def balances(r: dict[str, Any]) -> bool:
    """The 835 rule on a decoded remittance: billed − Σ CAS = paid on the claim and on
    every line, and patient responsibility = Σ PR."""
    lines_ok = all(line["billed_amount"] - sum(a["amount"] for a in line["adjustments"]) == line["paid_amount"]
                   for line in r["lines"])
    adjustments = [*r["adjustments"], *(a for line in r["lines"] for a in line["adjustments"])]
    claim_ok = r["billed_amount"] - sum(a["amount"] for a in adjustments) == r["paid_amount"]
    pr_ok = (sum((a["amount"] for a in adjustments if a["group_code"] == "PR"), Decimal(0))
             == r["patient_responsibility"])
    return lines_ok and claim_ok and pr_ok


def payer_share_by_visit(tally: Tally) -> dict[str, dict[str, str | None]]:
    """Per payer: what the payer paid ÷ allowed on members' first claim of a plan year and on
    their later claims (claims paid at least in part), in the order the claims were
    submitted (the order the payer adjudicates them): accumulators make later visits pay more."""
    visits: dict[tuple[str, str, int], list[str]] = {}
    for claim_id, (payer, member, day) in tally.claim_member.items():  # in submission order
        if claim_id in tally.first_pass_amounts:
            visits.setdefault((payer, member, day.year), []).append(claim_id)
    sums: dict[str, dict[str, list[Decimal]]] = {}
    for (payer, _, _), claims in visits.items():
        for ordinal, claim_id in enumerate(claims):
            paid, allowed = tally.first_pass_amounts[claim_id]
            if allowed > 0:
                slot = sums.setdefault(payer, {"first": [Decimal(0), Decimal(0)], "later": [Decimal(0), Decimal(0)]})
                which = slot["first" if ordinal == 0 else "later"]
                which[0] += paid
                which[1] += allowed
    return {payer: {k: (str((v[0] / v[1]).quantize(Decimal("0.001"))) if v[1] else None) for k, v in slot.items()}
            for payer, slot in sorted(sums.items())}


@dataclass(frozen=True)
class Identity:
    name: str
    lhs: int
    rhs: int

    @property
    def holds(self) -> bool:
        return self.lhs == self.rhs


def summarize(tally: Tally, settings: Settings, elapsed_s: float) -> dict[str, Any]:
    """The summary JSON: integer counts, identities, money as strings."""
    r = tally.records
    dl_from = {settings.topic(t): t for t in COUNTED_TOPICS}
    dead_by_stage_input = Counter({dl_from.get(src, src): n for src, n in tally.dead_letters_by_source.items()})
    originals = tally.submitted_by_frequency["1"]
    work = tally.work_item_accounting()
    summary: dict[str, Any] = {
        "encounters": r[Topic.ENCOUNTERS],
        "coded": r[Topic.CODED],
        "coded_first_pass": r[Topic.CODED] - tally.coded_after_review,
        "coding_review": tally.review_opened,
        "coding_findings_by_rule": dict(sorted(tally.findings_by_rule.items())),
        "coding_warnings_by_rule": dict(sorted(tally.warnings_by_rule.items())),
        "coding_audit_sampled": tally.audit_sampled,
        "coding_fixes": tally.coding_actions["FIX"],
        "coding_queries": tally.coding_actions["QUERY"],
        "coding_audits_closed": tally.coding_actions["AUDIT_AGREE"] + tally.coding_actions["AUDIT_DISAGREE"],
        "coding_fixes_still_failing": tally.review_revisions,
        "coding_fixes_resolved": tally.coding_actions["RESOLVED"],
        "coding_fixes_rejected": tally.coding_actions["FIX_REJECTED"],
        "coded_after_review": tally.coded_after_review,
        "dead_lettered": r[Topic.DEAD_LETTER],
        "dead_lettered_by_source": dict(sorted(dead_by_stage_input.items())),
        "eligibility_requests": r[Topic.ELIGIBILITY_REQUESTS],
        "eligibility_responses": r[Topic.ELIGIBILITY_RESPONSES],
        "eligibility_by_status": dict(sorted(tally.eligibility_by_status.items())),
        "eligibility_held": r[Topic.FRONT_DESK],
        "claims_built": originals + r[Topic.SCRUB_REJECTED],
        "scrub_rejected": r[Topic.SCRUB_REJECTED],
        "scrub_findings_by_rule": dict(sorted(tally.scrub_findings_by_rule.items())),
        "clean_claim_rate": (round(originals / (originals + r[Topic.SCRUB_REJECTED]), 4)
                             if originals + r[Topic.SCRUB_REJECTED] else None),
        "claims_submitted": r[Topic.CLAIMS_SUBMITTED],
        "claims_submitted_original": originals,
        "replacements_submitted": tally.submitted_by_frequency["7"],
        "duplicates_dropped": r[Topic.DUPLICATES],
        "remittances": r[Topic.REMITTANCES],
        "remittances_repeated": tally.repeated_remittances,
        "remittances_by_status": dict(sorted(tally.remittances_by_status.items())),
        "reversals": tally.remittances_by_status["22"],
        "voids_submitted": tally.voids_submitted,
        "voids_reversed": tally.voids_reversed,
        "remittances_unbalanced": tally.unbalanced_remittances,
        "paid": tally.posted_states["PAID"],
        "partially_paid": tally.posted_states["PARTIALLY_PAID"],
        "denied": tally.posted_states["DENIED"],
        "reversed": tally.posted_states["REVERSED"],
        "first_pass_by_payer": {
            payer: {"claims": n, "denied": tally.first_pass_denied_by_payer[payer],
                    "denial_rate": round(tally.first_pass_denied_by_payer[payer] / n, 4),
                    "deciding_carcs": dict(sorted(tally.deciding_carcs_by_payer.get(payer, Counter()).items()))}
            for payer, n in sorted(tally.first_pass_by_payer.items())
        },
        "payer_share_of_allowed_by_visit": payer_share_by_visit(tally),
        "statements": r[Topic.STATEMENTS],
        "statement_amount": str(tally.statement_amount),
        "patient_responsibility": str(tally.patient_responsibility),
        "denials_by_queue": dict(sorted(tally.denials_by_queue.items())),
        "denials_routed": tally.denials_routed,
        "work_items_created": work.created,
        "work_items_open": work.open,
        "work_items_resolved": work.resolved,
        "work_items_by_status": {k: v for k, v in work.by_status.items() if v},
        "denials_resolved": work.denials_resolved,
        "recovered_amount": str(work.recovered_amount),
        "written_off_amount": str(work.written_off_amount),
        "denial_actions": dict(sorted(tally.denial_action_kinds.items())),
        "repeated_claim_ids": tally.repeated_claim_ids,
        "redelivered": sum(tally.redelivered.values()),
        "redelivered_by_topic": dict(sorted(tally.redelivered.items())),
        "billed_amount": str(tally.billed_amount),
        "paid_amount": str(tally.paid_amount),
        "allowed_amount": str(tally.allowed_amount),
        "amount_at_risk": str(tally.at_risk_amount),
        "elapsed_s": round(elapsed_s, 2),
        "encounters_per_s": round(r[Topic.ENCOUNTERS] / elapsed_s, 1) if elapsed_s > 0 else 0.0,
    }
    summary["identities"] = {i.name: {"lhs": i.lhs, "rhs": i.rhs, "holds": i.holds} for i in identities(summary)}
    return summary


def identities(s: dict[str, Any]) -> list[Identity]:
    """The accounting identities. A dead letter leaves the flow at the stage that read it:
    ``dead_lettered`` as the issue states it counts the encounter stage's dead letters, and
    the later stages' (zero in a healthy run) balance their own identity."""
    dl = s["dead_lettered_by_source"]
    return [
        Identity("encounters = coded_first_pass + coding_review + dead_lettered", s["encounters"],
                 s["coded_first_pass"] + s["coding_review"] + dl.get(Topic.ENCOUNTERS, 0)),
        Identity("coding_fixes = coded_after_review + coding_fixes_still_failing + coding_fixes_rejected",
                 s["coding_fixes"], s["coded_after_review"] + s["coding_fixes_still_failing"]
                 + s["coding_fixes_rejected"] + dl.get(Topic.CODING_ACTIONS, 0)),
        Identity("coded_after_review = coding_fixes_resolved", s["coded_after_review"], s["coding_fixes_resolved"]),
        Identity("coded = claims_submitted_original + scrub_rejected + eligibility_held + duplicates_dropped",
                 s["coded"],
                 s["claims_submitted_original"] + s["scrub_rejected"] + s["eligibility_held"] + s["duplicates_dropped"]
                 + dl.get(Topic.CODED, 0) + dl.get(Topic.ELIGIBILITY_RESPONSES, 0)
                 + dl.get(Topic.ELIGIBILITY_REQUESTS, 0)),
        Identity("eligibility_requests = eligibility_responses", s["eligibility_requests"],
                 s["eligibility_responses"] + dl.get(Topic.ELIGIBILITY_REQUESTS, 0)),
        # Every claim gets one answer; a replacement also reverses its original, a void
        # is answered by that reversal alone.
        Identity("claims_submitted - voids_reversed = remittances - reversals",
                 s["claims_submitted"] - s["voids_reversed"],
                 s["remittances"] - s["remittances_repeated"] - s["reversals"] + dl.get(Topic.CLAIMS_SUBMITTED, 0)
                 + dl.get(Topic.PAYER_CLAIMS, 0)),
        Identity("remittances = paid + partially_paid + denied + reversed",
                 s["remittances"] - s["remittances_repeated"],
                 s["paid"] + s["partially_paid"] + s["denied"] + s["reversed"] + dl.get(Topic.REMITTANCES, 0)),
        Identity("remittances_unbalanced = 0", s["remittances_unbalanced"], 0),
        Identity("statement_amount = patient_responsibility", int(Decimal(s["statement_amount"]) * 100),
                 int(Decimal(s["patient_responsibility"]) * 100)),
        # Originals denied in full or in part each make one work item; a replacement denied
        # again is its item's next round, not a new item.
        Identity("denials_routed = sum(denials_by_queue)", s["denials_routed"], sum(s["denials_by_queue"].values())),
        Identity("work_items_created = denials_routed", s["work_items_created"], s["denials_routed"]),
        Identity("work_items_open + work_items_resolved = work_items_created",
                 s["work_items_open"] + s["work_items_resolved"], s["work_items_created"]),
    ]


class ReadBack:
    """Reads every counted topic from a baseline onward and keeps a ``Tally``.

    No consumer group: it assigns all partitions itself, so it never disturbs the
    engine's groups. The baseline is read, not asked for: Tansu answers ListOffsets
    (latest) wrongly (BROKER.md), so ``mark_baseline`` consumes up to each partition's
    fetch high watermark and counts only what comes after.
    """

    def __init__(self, settings: Settings, bootstrap_servers: str, codec: Codec, denial_queues: Sequence[Topic]):
        self.settings = settings
        self.codec = codec
        self.logical = {settings.topic(t): t for t in (*COUNTED_TOPICS, *denial_queues)}
        self.consumer = make_consumer(settings.with_bootstrap(bootstrap_servers), auto_offset_reset="earliest",
                                      max_partition_fetch_bytes=4 * 1024 * 1024)
        self.tally = Tally(not_denials=DenialRouting.load(settings.denial_routing_file).not_denials)
        self.partitions: list[TopicPartition] = []

    async def start(self) -> None:
        await self.consumer.start()
        self.partitions = await assign_all(self.consumer, list(self.logical))

    async def stop(self) -> None:
        await self.consumer.stop()

    async def mark_baseline(self, timeout_s: float = 60.0) -> None:
        """Skip what was on the topics before this run (a persistent broker)."""
        await read_to_highwater(self.consumer, self.partitions, timeout_s)

    async def poll(self, timeout_ms: int = 100) -> int:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=20_000)
        for records in batches.values():
            self._count(records)
        return sum(len(records) for records in batches.values())

    async def read_all(self, timeout_s: float = 60.0) -> Tally:
        """Count everything on the topics now (from the baseline, if one was marked)."""
        await read_to_highwater(self.consumer, self.partitions, timeout_s, self._count)
        return self.tally

    def _count(self, records: Sequence[Any]) -> None:
        for record in records:
            self.tally.add(self.logical[record.topic], record.key, record.value, self.codec, record.timestamp,
                           record.headers)


def all_settled(tally: Tally, expected_encounters: int, settings: Settings, coder_running: bool = False,
                summary: dict[str, Any] | None = None) -> bool:
    """Every expected encounter record was read and every stage balances (and, with
    the coder simulator running, it has acted on every new work item). ``summary``: the
    tally's, when the caller has just made it."""
    return not unsettled(tally, expected_encounters, settings, coder_running, summary)


def unsettled(tally: Tally, expected_encounters: int, settings: Settings, coder_running: bool = False,
              summary: dict[str, Any] | None = None) -> list[str]:
    """What keeps the run from settling, in words (empty once it has): so a run that did
    not settle says whether encounters, the coder or an identity are behind."""
    reasons = []
    read = tally.records[Topic.ENCOUNTERS]
    if read < expected_encounters:
        reasons.append(f"{read} of {expected_encounters} encounter records read")
    if coder_running:
        waiting = (tally.review_ids | tally.audit_ids) - tally.items_acted_on
        if waiting:
            reasons.append(f"{len(waiting)} coding work items the coder has not acted on (e.g. {min(waiting)})")
    if not reasons:  # the identities only once everything is in: before, they are merely behind
        broken = [i.name for i in identities(summary or summarize(tally, settings, 1.0)) if not i.holds]
        reasons += [f"identity broken: {name}" for name in broken]
    return reasons
