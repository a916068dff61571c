"""`claims load` on a real broker: the raw hop is measured first, the engine warms up, a
step is held and sampled, and the report's figures are consistent with each other (no
speed is asserted here: targets live in the benchmarks)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from engine.cli.load import LoadOptions, run_load
from tests.fixtures.kafka import SettingsFactory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


async def test_a_load_step_reports_stages_latency_processes_and_ratios_to_the_raw_hop(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory()
    options = LoadOptions(rate=30.0, duration_s=8.0, hop_messages=2_000, live=False, coder=True)

    report = await run_load(settings, options, Console(file=io.StringIO()))

    baseline = report["raw_hop_msg_per_s"]
    assert baseline > 0
    (step,) = report["steps"]
    assert step["rate_offered"] == 30.0 and len(step["lag"]) >= 2
    ratio = step["ratios_to_raw_hop"]["encounters_per_s"]
    assert ratio == pytest.approx(step["encounters_sent_per_s"] / baseline, rel=0.01)  # the rate is rounded
    assert set(step["stages"]) >= {"coding", "claims", "payer", "posting"}
    assert step["latency_s"]["end_to_end"]["count"] > 0  # the warm-up waited for a posted remittance
    assert {"load driver", "engine worker", "payer simulator"} <= set(step["processes"])
    assert all(usage["rss_mb_last"] > 0 for usage in step["processes"].values())
    assert 0 < report["encounters_read_back"] <= report["encounters_sent"]
    per_encounter = report["record_bytes_per_encounter"]
    assert per_encounter["total"] > 0 and per_encounter["by_topic"][settings.topic("encounters")] > 0
    assert report["max_sustained_encounters_per_s"] in (None, 30.0)
