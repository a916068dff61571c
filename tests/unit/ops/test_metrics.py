"""The ops figures as plain functions: latency hops whatever order the topics are read in,
percentiles, A/R aging in simulated days, per-stage counts and rates, lag arithmetic, the
dashboard's SVG, and the Prometheus exposition parsed back with prometheus-client."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from types import SimpleNamespace

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.model.events import ClaimState, ClaimStatus, ClaimSubmitted, Encounter
from engine.ops.metrics import (
    Latencies,
    LatencyFigures,
    Outstanding,
    PartitionLag,
    ThroughputHistory,
    aging_buckets,
    lag_by_topic,
    stage_counts,
)
from engine.ops.monitor import Monitor
from engine.ops.reconciliation import Tally
from engine.web.dashboard import bar_chart, charts, dashboard_page, line_chart

DAY_MS = 86_400_000


def test_every_hop_is_measured_once_whatever_order_the_records_come_in():
    in_order, reversed_order = Latencies(), Latencies()
    calls = [("encounter", ("E1", 1_000)), ("coded", ("E1", 1_250)), ("claim_submitted", ("C1", "E1", 2_000)),
             ("remitted", ("C1", 5_000)), ("posted", ("C1", 5_100))]
    for name, args in calls:
        getattr(in_order, name)(*args)
    for name, args in reversed(calls):
        getattr(reversed_order, name)(*args)
    for latencies in (in_order, reversed_order):
        got = {stage: list(f.recent) for stage, f in latencies.figures.items()}
        assert got == {"coding": [0.25], "claims": [0.75], "payer": [3.0], "posting": [0.1], "end_to_end": [4.1]}
        assert latencies.encounter_at == latencies.submitted == latencies.posted_at == {}  # forgotten once complete


def test_a_reviewed_encounter_s_claims_hop_starts_when_it_is_coded_not_when_it_went_to_review():
    latencies = Latencies()
    latencies.encounter("E1", 0)
    latencies.coded("E1", 100, review=True)  # to the coders
    latencies.coded("E1", 60_000)  # a coder's fix, a minute later
    latencies.claim_submitted("C1", "E1", 60_500)
    assert list(latencies.figures["coding"].recent) == [0.1]
    assert list(latencies.figures["claims"].recent) == [0.5]


def test_a_redelivered_record_is_not_a_second_latency():
    latencies = Latencies()
    latencies.encounter("E1", 0)
    latencies.coded("E1", 100)
    latencies.coded("E1", 900)  # the same encounter coded again (a redelivery)
    assert latencies.figures["coding"].count == 1


def test_percentiles_are_nearest_rank_and_buckets_cumulative():
    figures = LatencyFigures()
    for ms in range(1, 101):
        figures.observe(ms / 1000)
    assert (figures.percentile(0.5), figures.percentile(0.95), figures.percentile(0.99)) == (0.05, 0.095, 0.099)
    buckets = dict(figures.cumulative())
    assert buckets["0.01"] == 10 and buckets["0.1"] == 100 and buckets["+Inf"] == figures.count == 100
    assert LatencyFigures().percentile(0.5) is None


def test_ar_ages_open_balances_in_simulated_days():
    now = 100 * DAY_MS
    claims = [Outstanding(now - 10 * DAY_MS, Decimal("100.00")),  # not answered yet: the billed amount is open
              Outstanding(now - 45 * DAY_MS, Decimal("80.00"), Decimal("30.00")),  # a partly denied balance
              Outstanding(now - 75 * DAY_MS, Decimal("60.00"), Decimal("0.00")),  # settled
              Outstanding(now - 95 * DAY_MS, Decimal("50.00"), Decimal("50.00")),
              Outstanding(None, Decimal("0.00"), Decimal("20.00"))]  # its submission not read yet
    assert aging_buckets(claims, now, time_scale=0) == {"0-30": Decimal("100.00"), "31-60": Decimal("30.00"),
                                                        "61-90": Decimal("0.00"), "90+": Decimal("50.00")}
    # 1,728,000 simulated seconds per real second: 1 real second is 20 simulated days.
    fast = [Outstanding(now - 2_000, Decimal("10.00"))]
    assert aging_buckets(fast, now, time_scale=1_728_000)["31-60"] == Decimal("10.00")


def test_stage_counts_and_rates_follow_the_topics():
    counts = stage_counts({"encounters": 10, "coded": 8, "coding-review": 2, "remittances": 6,
                           "denials.coding": 2, "denials.other": 1})
    assert counts["coding"] == {"in": 10, "out": 10}
    assert counts["posting"] == {"in": 6, "out": 3}
    history = ThroughputHistory()
    history.add(0.0, stage_counts({"encounters": 0}))
    history.add(2.0, stage_counts({"encounters": 100, "coded": 90}))
    assert history.rates()["coding"] == {"in": 50.0, "out": 45.0}
    assert history.series("coding") == [(2.0, 45.0)]


def test_lag_is_end_minus_committed_summed_per_topic():
    rows = [PartitionLag("g", "encounters", 0, 500, 120), PartitionLag("g", "encounters", 1, 40, 0),
            PartitionLag("g", "coded", 0, 10, 10), PartitionLag("g", "coded", 1, 10, 12)]
    assert [r.lag for r in rows] == [380, 40, 0, 0]
    assert lag_by_topic(rows) == {"g": {"encounters": 420, "coded": 0}}


def test_charts_draw_their_values():
    svg = bar_chart("Consumer lag", "records", {"coded": {"lag": 30.0}, "encounters": {"lag": 70.0}})
    assert svg.startswith("<svg") and svg.count("<rect") == 2 and "encounters lag: 70" in svg
    line = line_chart("Throughput", "events/s", {"coding": [(0.0, 1.0), (2.0, 5.0)]})
    assert "<polyline" in line and "coding" in line
    assert "waiting for data" in line_chart("Throughput", "events/s", {"coding": []})


@pytest.fixture
def monitor(settings, codec, samples):
    """A monitor over a tally filled as the reader fills it (no broker: these are figures)."""
    tally = Tally()
    claim = samples[ClaimSubmitted]
    tally.add("encounters", b"ENC-1", codec.encode(dataclasses.replace(samples[Encounter], encounter_id="ENC-1")),
              codec, 1_000)
    tally.add("claims-submitted", claim.claim_id.encode(), codec.encode(claim), codec, 3_000)
    status = dataclasses.replace(samples[ClaimStatus], claim_id=claim.claim_id, status=ClaimState.DENIED,
                                 remittances_posted=1, balance=Decimal("298.00"))
    tally.add("claim-status", claim.claim_id.encode(), codec.encode(status), codec, 4_000)
    fake_reader = SimpleNamespace(tally=tally)  # Monitor reads only .tally for its figures
    m = Monitor(settings, "127.0.0.1:1", codec, readback=fake_reader)  # type: ignore[arg-type]
    m.lags = [PartitionLag(settings.app_id, "encounters", 0, 12, 2)]
    m.history.add(0.0, stage_counts({}))
    m.history.add(2.0, stage_counts(tally.records))
    return m


def test_status_has_every_figure_ops_watch(monitor):
    status = monitor.status()
    assert set(status) >= {"stages", "latency_s", "lag", "lag_total", "dead_letter_rate", "coding_review_rate",
                           "top_coding_rules", "clean_claim_rate", "first_pass_denial_rate",
                           "first_pass_denial_rate_by_category", "amounts", "ar_aging", "denial_queues"}
    assert status["lag_total"] == 10 and status["stages"]["coding"]["in"] == 1
    assert status["stages"]["coding"]["in_per_s"] == 0.5
    assert sum(Decimal(v) for v in status["ar_aging"].values()) == Decimal("298.00")


def test_prometheus_exposition_parses_and_carries_the_counts(monitor):
    text = generate_latest(monitor.registry()).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    records = {s.labels["topic"]: s.value for s in families["claimflow_topic_records"].samples
               if s.name.endswith("_total")}
    assert records["encounters"] == 1 and records["claims-submitted"] == 1
    lag = families["claimflow_consumer_lag"].samples
    assert [(s.labels["topic"], s.labels["partition"], s.value) for s in lag] == [("encounters", "0", 10.0)]
    assert "claimflow_stage_latency_seconds" in families
    assert not re.search(r"(first_name|last_name|birth|member_id)", text)  # no PHI in names or labels


def test_the_dashboard_page_shows_every_chart_and_refreshes(monitor):
    page = dashboard_page(monitor.status(), monitor.history)
    assert page.count("<svg") == len(charts(monitor.status(), monitor.history)) == 8
    assert 'http-equiv="refresh"' in page and "denial queues" in page


def test_claims_top_renders_every_section(monitor):
    from rich.console import Console

    from engine.cli.top import top_view

    console = Console(record=True, width=160)
    console.print(top_view(monitor.status()))
    text = console.export_text()
    for title in ("Claimflow — top", "stages", "consumer lag", "first-pass denials", "$ and A/R aging",
                  "denial queues", "end to end"):
        assert title in text, title
