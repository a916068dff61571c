"""The ops figures live: a ``Monitor`` keeps the read-back of every topic (its own, or the
one ``claims run`` already polls), samples throughput and consumer lag every few seconds,
and serves the figures as one status dict, as Prometheus metrics (``/metrics``; a
collector computes them at scrape time from the same state, so the two never disagree)
and to the dashboard and ``claims top``. No PHI anywhere: labels are stages, topics,
groups, payers, categories, queues and buckets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from engine.denials.desk import today
from engine.denials.work_items import queue_overview
from engine.ops.metrics import (
    LATENCY_STAGES,
    PartitionLag,
    ThroughputHistory,
    aging_buckets,
    as_float,
    consumer_lag,
    engine_groups,
    lag_by_topic,
    now_ms,
    stage_counts,
)
from engine.ops.reconciliation import COUNTED_TOPICS, ReadBack, summarize
from engine.posting.routing import DenialRouting
from engine.runtime.kafka import make_admin
from engine.settings import Settings
from engine.wire.codec import Codec
from engine.wire.topics import Topic

log = logging.getLogger(__name__)

#: Seconds between throughput and lag samples.
SAMPLE_INTERVAL_S = 2.0
#: How long a monitor of its own may take to read what is already on the topics.
CATCH_UP_S = 600.0


class Monitor:
    """Figures from the topics for one broker. ``readback`` shared with ``claims run``
    (which polls it), or None: the monitor reads everything from the beginning itself."""

    def __init__(self, settings: Settings, bootstrap: str, codec: Codec, readback: ReadBack | None = None,
                 sample_interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.settings, self.bootstrap, self.codec = settings, bootstrap, codec
        self.sample_interval_s = sample_interval_s
        self.routing = DenialRouting.load(settings.denial_routing_file)
        self.owns_reader = readback is None
        self.readback = readback or ReadBack(settings, bootstrap, codec, self.routing.queues())
        self.history = ThroughputHistory()
        self.lags: list[PartitionLag] = []
        self.started = time.monotonic()
        self._admin: AIOKafkaAdminClient | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Connect (the reader, if it is ours, and the admin client for lag); no sampling."""
        if self.owns_reader:
            await self.readback.start()
        self._admin = make_admin(self.settings.with_bootstrap(self.bootstrap))
        await self._admin.start()

    async def start(self) -> None:
        """Connect and keep sampling (and reading, if the reader is ours) in the background."""
        await self.open()
        self._task = asyncio.create_task(self._run(), name="monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._admin is not None:
            await self._admin.close()
        if self.owns_reader:
            await self.readback.stop()

    async def _run(self) -> None:
        if self.owns_reader:  # catch up first: the first rate is then this moment's, not the backlog's
            await self.readback.read_all(timeout_s=CATCH_UP_S)
        next_sample = 0.0
        while True:
            try:
                if self.owns_reader:
                    await self.readback.poll(timeout_ms=200)
                else:
                    await asyncio.sleep(0.2)  # the run's own loop polls the shared reader
                if time.monotonic() >= next_sample:
                    next_sample = time.monotonic() + self.sample_interval_s
                    await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker hiccup must not freeze the figures for good
                log.warning("monitor: %s; reading on", type(exc).__name__)
                await asyncio.sleep(SAMPLE_INTERVAL_S)

    def stage_counts(self) -> dict[str, dict[str, int]]:
        tally = self.readback.tally
        return stage_counts(tally.records)

    async def sample(self) -> None:
        """One throughput point and a fresh lag reading."""
        self.history.add(time.monotonic(), self.stage_counts())
        try:
            self.lags = await self.lag()
        except Exception as exc:  # the broker restarting: keep the last reading, say so once per sample
            log.warning("consumer lag not read: %s", type(exc).__name__)

    async def lag(self) -> list[PartitionLag]:
        assert self._admin is not None, "start() first"
        consumer = self.readback.consumer
        ends = {tp: hw for tp in self.readback.partitions if (hw := consumer.highwater(tp)) is not None}
        return await consumer_lag(self._admin, self.settings, engine_groups(self.settings), ends)

    # --- the figures ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Every figure, JSON-ready (money as strings, rates as floats)."""
        tally = self.readback.tally
        summary = summarize(tally, self.settings, time.monotonic() - self.started)
        folded = tally.folded()  # the same cached fold the summary used
        queues = queue_overview(folded.items, today())
        at_risk_open = sum((q.amount_at_risk for q in queues.values()), Decimal("0.00"))
        encounters = summary["encounters"]
        first_pass = summary["first_pass_by_payer"]
        by_payer_category = Counter((item.payer_id, item.category) for item, _ in folded.items)
        aging = aging_buckets(tally.outstanding.values(), now_ms(), self.settings.payer_time_scale)
        return {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "stages": {stage: {"in": c["in"], "out": c["out"], **{f"{k}_per_s": round(v, 2) for k, v in rate.items()}}
                       for (stage, c), rate in zip(self.stage_counts().items(), self.history.rates().values(),
                                                   strict=True)},
            "latency_s": {stage: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()}
                          for stage, figures in tally.latency.percentiles().items()},
            "lag": lag_by_topic(self.lags),
            "lag_total": sum(row.lag for row in self.lags),
            "dead_letter_rate": round(summary["dead_lettered"] / encounters, 4) if encounters else 0.0,
            "coding_review_rate": round(summary["coding_review"] / encounters, 4) if encounters else 0.0,
            "top_coding_rules": dict(sorted(summary["coding_findings_by_rule"].items(),
                                            key=lambda kv: (-kv[1], kv[0]))[:5]),
            "clean_claim_rate": summary["clean_claim_rate"],
            "first_pass_denial_rate": {payer: seen["denial_rate"] for payer, seen in first_pass.items()},
            "first_pass_denial_rate_by_category": {
                payer: {category: round(n / first_pass[payer]["claims"], 4)
                        for (p, category), n in sorted(by_payer_category.items()) if p == payer}
                for payer in first_pass if first_pass[payer]["claims"]},
            "amounts": {"billed": summary["billed_amount"], "allowed": summary["allowed_amount"],
                        "paid": summary["paid_amount"], "patient_responsibility": summary["patient_responsibility"],
                        "at_risk_in_denial_queues": str(at_risk_open)},
            "amounts_by_payer": {payer: {kind: str(v) for kind, v in amounts.items()}
                                 | {"at_risk_in_denial_queues": str(sum((i.amount_at_risk for i, s in folded.items
                                                                          if s.is_open and i.payer_id == payer),
                                                                         Decimal("0.00")))}
                                 for payer, amounts in sorted(tally.amounts_by_payer.items())},
            "ar_aging": {bucket: str(amount) for bucket, amount in aging.items()},
            "denial_queues": {q.queue: {"open": q.open_count, "for_a_biller": q.actionable_count,
                                        "at_risk": str(q.amount_at_risk), "oldest_open_days": q.oldest_open_days}
                              for q in queues.values()},
            "summary": {k: summary[k] for k in ("encounters", "coded", "claims_submitted",  # summary keys
                                                "remittances", "dead_lettered", "coding_review",  # summary keys
                                                "denials_routed",
                                                "work_items_open", "denials_resolved", "recovered_amount")},
        }

    def collector(self) -> Collector:
        return _MonitorCollector(self)

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.collector())
        return registry


class _MonitorCollector(Collector):
    """Prometheus families computed from the monitor's state at each scrape."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Any]:
        monitor = self.monitor
        tally = monitor.readback.tally
        status = monitor.status()
        records = CounterMetricFamily("claimflow_topic_records", "Records read back per logical topic.",
                                      labels=["topic"])
        for topic in (*COUNTED_TOPICS, *(t for t in Topic.denial_queues() if tally.records[t])):
            records.add_metric([topic], tally.records[topic])
        yield records
        events = CounterMetricFamily("claimflow_stage_events", "Events into and out of each stage.",
                                     labels=["stage", "direction"])
        rate = GaugeMetricFamily("claimflow_stage_events_per_second", "Recent events/s per stage.",
                                 labels=["stage", "direction"])
        for stage, figures in status["stages"].items():
            for direction in ("in", "out"):
                events.add_metric([stage, direction], figures[direction])
                rate.add_metric([stage, direction], figures[f"{direction}_per_s"])
        yield events
        yield rate
        latency = HistogramMetricFamily("claimflow_stage_latency_seconds",
                                        "Processing latency per stage and end to end (record times).",
                                        labels=["stage"])
        for stage in LATENCY_STAGES:
            figures = tally.latency.figures[stage]
            latency.add_metric([stage], figures.cumulative(), figures.total_s)
        yield latency
        lag = GaugeMetricFamily("claimflow_consumer_lag", "End offset - committed offset.",
                                labels=["group", "topic", "partition"])
        for row in monitor.lags:
            lag.add_metric([row.group, row.topic, str(row.partition)], row.lag)
        yield lag
        for name, key, doc in (("claimflow_dead_letter_rate", "dead_letter_rate", "Dead letters per encounter."),
                               ("claimflow_coding_review_rate", "coding_review_rate",
                                "Encounters sent to coders per encounter."),
                               ("claimflow_clean_claim_rate", "clean_claim_rate",
                                "Claims passing the scrubber first time per claim built.")):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], status[key] or 0.0)
            yield gauge
        rules = CounterMetricFamily("claimflow_coding_findings", "Coding work items per rule id.", labels=["rule"])
        for rule, n in sorted(tally.findings_by_rule.items()):
            rules.add_metric([rule], n)
        yield rules
        denial = GaugeMetricFamily("claimflow_first_pass_denial_rate", "First-pass denial rate per payer.",
                                   labels=["payer"])
        for payer, value in status["first_pass_denial_rate"].items():
            denial.add_metric([payer], value)
        yield denial
        by_category = GaugeMetricFamily("claimflow_first_pass_denial_rate_by_category",
                                        "First-pass denials per original claim, per payer and denial category.",
                                        labels=["payer", "category"])
        for payer, categories in status["first_pass_denial_rate_by_category"].items():
            for category, value in categories.items():
                by_category.add_metric([payer, category], value)
        yield by_category
        amounts = GaugeMetricFamily("claimflow_amount_dollars", "Money through the loop, by kind.", labels=["kind"])
        for kind, value in status["amounts"].items():
            amounts.add_metric([kind], as_float(Decimal(value)) or 0.0)
        yield amounts
        by_payer = GaugeMetricFamily("claimflow_payer_amount_dollars", "Money through the loop per payer, by kind.",
                                     labels=["payer", "kind"])
        for payer, kinds in status["amounts_by_payer"].items():
            for kind, value in kinds.items():
                by_payer.add_metric([payer, kind], as_float(Decimal(value)) or 0.0)
        yield by_payer
        aging = GaugeMetricFamily("claimflow_ar_aging_dollars", "Open A/R by age (simulated days).",
                                  labels=["bucket"])
        for bucket, value in status["ar_aging"].items():
            aging.add_metric([bucket], as_float(Decimal(value)) or 0.0)
        yield aging
        depth = GaugeMetricFamily("claimflow_denial_queue_depth", "Open work items per denial queue.",
                                  labels=["queue"])
        oldest = GaugeMetricFamily("claimflow_denial_queue_oldest_days", "Age of the oldest open item, days.",
                                   labels=["queue"])
        for queue, figures in status["denial_queues"].items():
            depth.add_metric([queue], figures["open"])
            oldest.add_metric([queue], figures["oldest_open_days"] or 0)
        yield depth
        yield oldest
