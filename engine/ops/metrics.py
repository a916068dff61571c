"""What ops watch, computed from the events themselves (never from the producers' own
tallies): throughput per stage, processing latency per stage and end to end, consumer lag
of every engine group, denial and clean-claim rates, the $ flow, A/R aging and the denial
queues. One ``Metrics`` object feeds the Prometheus ``/metrics`` endpoint, the JSON
``/status``, the dashboard page and ``claims top``.

Latency uses each record's Kafka timestamp (the producer's create time): an encounter's
coding latency is its ``coded`` (or ``coding-review``) record's time minus its encounter
record's time, and so on down the flow; end to end is encounter produced → first
remittance posted (its ``claim-status`` posting). The payer's latency includes its
simulated payment delay, in real seconds.

Lag is end offset − committed offset per group, topic and partition. End offsets are the
fetch high watermark of the reader assigned to every partition: Tansu answers
ListOffsets (latest) wrongly (BROKER.md). A partition a group never committed counts
from 0, which is where the ``earliest`` reset policy of every engine group starts.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from engine.settings import Settings
from engine.wire.topics import Topic

#: Stages as ops name them, each with the topics it reads and writes.
STAGES: dict[str, tuple[tuple[Topic, ...], tuple[Topic, ...]]] = {
    "coding": ((Topic.ENCOUNTERS, Topic.CODING_ACTIONS), (Topic.CODED, Topic.CODING_REVIEW)),
    "claims": ((Topic.CODED, Topic.ELIGIBILITY_RESPONSES),
               (Topic.CLAIMS_SUBMITTED, Topic.ELIGIBILITY_REQUESTS, Topic.FRONT_DESK, Topic.SCRUB_REJECTED,
                Topic.DUPLICATES)),
    "payer": ((Topic.CLAIMS_SUBMITTED, Topic.ELIGIBILITY_REQUESTS), (Topic.REMITTANCES, Topic.ELIGIBILITY_RESPONSES)),
    "posting": ((Topic.REMITTANCES,), (Topic.CLAIM_STATUS, Topic.STATEMENTS, *Topic.denial_queues())),
    "denial-actions": ((Topic.DENIAL_ACTIONS,), ()),
}
#: Latency figures: each stage's hop, and the whole way.
LATENCY_STAGES = ("coding", "claims", "payer", "posting", "end_to_end")
#: Prometheus histogram bucket bounds, seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: A/R aging buckets, simulated days (upper bounds; the last is open).
AGING_BUCKETS = (("0-30", 30), ("31-60", 60), ("61-90", 90), ("90+", None))
#: Recent latencies kept per stage for the percentiles.
RECENT = 5_000
#: Throughput samples kept for the charts (one per ``sample()`` call, every ~2 s).
HISTORY = 300


class LatencyFigures:
    """One stage's latencies: all-time histogram buckets (Prometheus) and the recent
    ones for p50/p95/p99."""

    def __init__(self) -> None:
        self.bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.count = 0
        self.total_s = 0.0
        self.recent: deque[float] = deque(maxlen=RECENT)

    def observe(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        self.bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.count += 1
        self.total_s += seconds
        self.recent.append(seconds)

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile of the recent latencies (None before the first)."""
        if not self.recent:
            return None
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as a Prometheus histogram has them, +Inf last."""
        running, out = 0, []
        for bound, n in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.bucket_counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass
class Latencies:
    """Follows each encounter down the flow by record time (ms) and records each hop once
    both its ends are known, whatever order the topics are read in (a reader catching up
    reads them side by side). An encounter's times are dropped once its end-to-end figure
    is in, so memory follows what is in flight."""

    encounter_at: dict[str, int] = field(default_factory=dict)
    first_output_at: dict[str, int] = field(default_factory=dict)  # coded or to review: the coding hop's end
    coded_at: dict[str, int] = field(default_factory=dict)  # coded: the claims hop's start
    submitted: dict[str, tuple[int, str]] = field(default_factory=dict)  # claim id → (ms, encounter id)
    remitted_at: dict[str, int] = field(default_factory=dict)
    posted_at: dict[str, int] = field(default_factory=dict)
    claim_of: dict[str, str] = field(default_factory=dict)  # encounter id → its (first) claim id
    figures: dict[str, LatencyFigures] = field(default_factory=lambda: {s: LatencyFigures() for s in LATENCY_STAGES})

    def encounter(self, encounter_id: str, ts: int) -> None:
        if encounter_id not in self.encounter_at:
            self.encounter_at[encounter_id] = ts
            self._coding_hop(encounter_id)

    def coded(self, encounter_id: str, ts: int, review: bool = False) -> None:
        """The coding stage's answer: ``coded``, or ``review`` (to the coders; a coder's
        fix is coded later, and the claims hop starts there, not at the review)."""
        self.first_output_at.setdefault(encounter_id, ts)
        if not review:
            self.coded_at.setdefault(encounter_id, ts)
        self._coding_hop(encounter_id)

    def claim_submitted(self, claim_id: str, encounter_id: str, ts: int) -> None:
        if claim_id not in self.submitted:
            self.submitted[claim_id] = (ts, encounter_id)
            self.claim_of.setdefault(encounter_id, claim_id)
            self._claim_hops(claim_id)

    def remitted(self, claim_id: str, ts: int) -> None:
        if claim_id not in self.remitted_at:
            self.remitted_at[claim_id] = ts
            self._claim_hops(claim_id)

    def posted(self, claim_id: str, ts: int) -> None:
        """The claim's first remittance posted (its first ``claim-status`` posting)."""
        if claim_id not in self.posted_at:
            self.posted_at[claim_id] = ts
            self._claim_hops(claim_id)

    def _coding_hop(self, encounter_id: str) -> None:
        enc, out = self.encounter_at.get(encounter_id), self.first_output_at.get(encounter_id)
        if enc is not None and out is not None and encounter_id not in self._coding_seen:  # once
            self._coding_seen.add(encounter_id)
            self.figures["coding"].observe((out - enc) / 1000)
        if encounter_id in self.claim_of:
            self._claim_hops(self.claim_of[encounter_id])

    def _claim_hops(self, claim_id: str) -> None:
        """Observe every hop of the claim whose two ends are now known, each once."""
        if claim_id not in self.submitted:
            return
        sub, encounter_id = self.submitted[claim_id]
        enc, coded = self.encounter_at.get(encounter_id), self.coded_at.get(encounter_id)
        rem, post = self.remitted_at.get(claim_id), self.posted_at.get(claim_id)
        hops = {"claims": (coded, sub), "payer": (sub, rem), "posting": (rem, post), "end_to_end": (enc, post)}
        for stage, (begin, finish) in hops.items():
            if begin is not None and finish is not None and (stage, claim_id) not in self._seen:
                self._seen.add((stage, claim_id))
                self.figures[stage].observe((finish - begin) / 1000)
        if all((stage, claim_id) in self._seen for stage in hops):  # the whole way is known: forget it
            for table in (self.remitted_at, self.posted_at, self.submitted):
                table.pop(claim_id, None)
            for by_encounter in (self.encounter_at, self.first_output_at, self.coded_at, self.claim_of):
                by_encounter.pop(encounter_id, None)
            self._coding_seen.discard(encounter_id)
            self._seen -= {(s, claim_id) for s in hops}

    def __post_init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._coding_seen: set[str] = set()

    def restart_window(self) -> None:
        """Percentiles from here on only (a load step's, not its warm-up's); the all-time
        histograms keep counting."""
        for figures in self.figures.values():
            figures.recent.clear()

    def percentiles(self) -> dict[str, dict[str, float | None]]:
        return {stage: {"p50": f.percentile(0.50), "p95": f.percentile(0.95), "p99": f.percentile(0.99),
                        "count": f.count} for stage, f in self.figures.items()}


@dataclass
class Outstanding:
    """A/R: a claim's open amount and since when (record time, ms). Filled from two topics
    in whatever order they are read: the submission gives the time and the billed amount,
    each posting the ledger's balance."""

    submitted_ms: int | None = None
    billed: Decimal = Decimal("0.00")
    balance: Decimal | None = None  # None until the first posting: the whole billed amount is open

    @property
    def open_amount(self) -> Decimal:
        return self.billed if self.balance is None else self.balance


def aging_buckets(claims: Iterable[Outstanding], now_ms: int, time_scale: float) -> dict[str, Decimal]:
    """Open balances by age since submission in simulated days (``time_scale`` simulated
    seconds per real second; 0 means real time): 0–30, 31–60, 61–90, 90+."""
    scale = time_scale if time_scale > 0 else 1.0
    out = {name: Decimal("0.00") for name, _ in AGING_BUCKETS}
    for claim in claims:
        if claim.submitted_ms is None or claim.open_amount <= 0:
            continue
        days = (now_ms - claim.submitted_ms) / 1000 * scale / 86_400
        name = next(n for n, upper in AGING_BUCKETS if upper is None or days <= upper)
        out[name] += claim.open_amount
    return out


def stage_counts(records: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """Events in and out of each stage, from the records counted per topic."""
    return {stage: {"in": sum(records.get(t, 0) for t in ins), "out": sum(records.get(t, 0) for t in outs)}
            for stage, (ins, outs) in STAGES.items()}


@dataclass
class ThroughputHistory:
    """Samples of the per-stage counts over time, for rates and the charts."""

    samples: deque[tuple[float, dict[str, dict[str, int]]]] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def add(self, at: float, counts: dict[str, dict[str, int]]) -> None:
        self.samples.append((at, counts))

    def rates(self, window: int = 3) -> dict[str, dict[str, float]]:
        """Events/s in and out per stage over the last ``window`` sample intervals."""
        if len(self.samples) < 2:
            return {stage: {"in": 0.0, "out": 0.0} for stage in STAGES}
        (t0, first), (t1, last) = self.samples[max(0, len(self.samples) - 1 - window)], self.samples[-1]
        span = max(t1 - t0, 1e-9)
        return {stage: {k: (last[stage][k] - first[stage][k]) / span for k in ("in", "out")} for stage in STAGES}

    def series(self, stage: str, direction: str = "out") -> list[tuple[float, float]]:
        """(time, events/s) between consecutive samples: the throughput chart's line."""
        points = list(self.samples)
        return [(t1, (b[stage][direction] - a[stage][direction]) / max(t1 - t0, 1e-9))
                for (t0, a), (t1, b) in zip(points, points[1:], strict=False)]


def engine_groups(settings: Settings) -> dict[str, tuple[Topic, ...]]:
    """Every consumer group of the engine and its simulators, with the topics it reads."""
    return {
        settings.app_id: (Topic.ENCOUNTERS, Topic.CODING_ACTIONS, Topic.CODED, Topic.ELIGIBILITY_RESPONSES,
                          Topic.REMITTANCES, Topic.DENIAL_ACTIONS),
        settings.payer_app_id: (Topic.ELIGIBILITY_REQUESTS, Topic.CLAIMS_SUBMITTED, Topic.PAYER_CLAIMS,
                                Topic.DENIAL_ACTIONS),
        settings.coder_group_id: (Topic.CODING_REVIEW,),
    }


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str  # logical name
    partition: int
    end_offset: int
    committed: int  # 0 when the group never committed there

    @property
    def lag(self) -> int:
        return max(self.end_offset - self.committed, 0)


async def consumer_lag(admin: AIOKafkaAdminClient, settings: Settings, groups: Mapping[str, tuple[Topic, ...]],
                       end_offsets: Mapping[TopicPartition, int]) -> list[PartitionLag]:
    """Lag of every group on every partition of its topics whose end offset is known. A
    group with no committed offset anywhere is not running (``--no-coder``, a fresh
    cluster): it has no lag to report, rather than the whole of its topics."""
    out = []
    for group, topics in groups.items():
        partitions = [tp for tp in end_offsets if tp.topic in {settings.topic(t) for t in topics}]
        if not partitions:
            continue
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        if not any(meta is not None and meta.offset >= 0 for meta in committed.values()):
            continue
        logical = {settings.topic(t): t for t in topics}
        for tp in sorted(partitions):
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else 0
            out.append(PartitionLag(group, logical[tp.topic], tp.partition, end_offsets[tp], offset))
    return out


def lag_by_topic(lags: Iterable[PartitionLag]) -> dict[str, dict[str, int]]:
    """group → topic → total lag over its partitions."""
    out: dict[str, dict[str, int]] = {}
    for row in lags:
        out.setdefault(row.group, {}).setdefault(row.topic, 0)
        out[row.group][row.topic] += row.lag
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


def as_float(value: Decimal | float | int | None) -> float | None:
    """For Prometheus samples and chart geometry only: money stays Decimal elsewhere."""
    return None if value is None else float(value)
