"""The speed figures of one `make bench` against the issue's targets, in one table.

Reads the JSON reports the benchmarks wrote (``claims load --report`` on each broker, with
one worker and with two; ``bench/stages.py --report``) and prints, per broker, each figure,
its ratio to the raw aiokafka hop measured in the same run, its target and the gap to it.
Every ratio is against the hop of the report the figure comes from: machines are noisy.

    python bench/report.py load-tansu.json load-kafka.json load-tansu-2w.json bench-stages.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.ops.load import SENDER_TOLERANCE  # noqa: E402

#: The issue's targets (2 cores, embedded broker): benchmarks, never timed tests.
TARGET_ENCOUNTERS_PER_S = 1_500.0
TARGET_WRITTEN_SHARE = 0.08  # records written by the stages, of the raw hop
TARGET_STAGE_SHARE = 0.10  # each stage alone, of the raw hop
TARGET_P99_S = 0.25  # encounter produced → remittance posted, at 500 encounters/s
TARGET_P99_AT_RATE = 500.0
TARGET_BYTES_PER_ENCOUNTER = 5_000
TARGET_RSS_GROWTH = 0.10  # after warm-up, over a long step
TARGET_START_S = 5.0
#: A load report of at least this many encounters is the long run the memory target is read from.
MEMORY_RUN_ENCOUNTERS = 150_000


@dataclass(frozen=True)
class Row:
    figure: str
    value: str
    ratio: str
    target: str
    gap: str


def load_rows(report: dict[str, Any]) -> list[Row]:
    """The closed loop's figures from one ``claims load`` report."""
    hop = float(report["raw_hop_msg_per_s"])
    steps = report["steps"]
    held = [s for s in steps if held_step(s)]
    best = max((s["rate_offered"] for s in held), default=None)
    rows = [Row("raw aiokafka hop (getmany → send_batch → commit)", f"{hop:,.0f} msg/s", "1", "", "")]
    if best is None:
        return [*rows, Row("closed loop, highest sustained", "no step held", "", f"≥ {TARGET_ENCOUNTERS_PER_S:,.0f}/s",
                           "")]
    at_best = max(held, key=lambda s: s["rate_offered"])
    rows.append(Row("closed loop, highest sustained rate", f"{best:,.0f} encounters/s", share(best, hop),
                    f"≥ {TARGET_ENCOUNTERS_PER_S:,.0f}/s", times_short(best, TARGET_ENCOUNTERS_PER_S)))
    written = sum(stage.get("out_per_s", 0.0) for stage in at_best["stages"].values())
    rows.append(Row("records written by the stages at that rate (changelogs not counted)", f"{written:,.0f}/s",
                    share(written, hop), f"≥ {TARGET_WRITTEN_SHARE:.0%} of the hop",
                    times_short(written / hop, TARGET_WRITTEN_SHARE)))
    latency = at_best["latency_s"].get("end_to_end", {})
    if latency:
        rows.append(Row(f"end to end p50 / p99 at {best:,.0f}/s", f"{latency['p50']:.2f} / {latency['p99']:.2f} s",
                        "", f"p99 ≤ {TARGET_P99_S} s at {TARGET_P99_AT_RATE:,.0f}/s",
                        latency_gap(latency["p99"], best)))
    size = report["record_bytes_per_encounter"]["total"]
    rows.append(Row("record bytes per encounter, all topics", f"{size:,}", "", f"≤ {TARGET_BYTES_PER_ENCOUNTER:,}",
                    "met" if size <= TARGET_BYTES_PER_ENCOUNTER else f"{size / TARGET_BYTES_PER_ENCOUNTER:.2f}×"))
    for name, usage in at_best["processes"].items():
        rows.append(Row(f"{name}: CPU, RSS at {best:,.0f}/s",
                        f"{usage['cpu_percent_mean']:.0f} % of a core, {usage['rss_mb_last']:.0f} MB", "", "", ""))
    return rows


def memory_rows(report: dict[str, Any]) -> list[Row]:
    """RSS growth after warm-up over the longest step of a ``claims load`` report."""
    longest = max(report["steps"], key=lambda s: len(s["lag"]))  # a sample a second
    sent = report["encounters_sent"]
    rows = []
    for name, usage in longest["processes"].items():
        growth = usage.get("rss_growth_after_warm_up")
        if growth is None or name in {"load driver"}:
            continue
        rows.append(Row(f"{name}: RSS after warm-up → end ({sent:,} encounters)",
                        f"{usage['rss_mb_after_warm_up']:.0f} → {usage['rss_mb_last']:.0f} MB", "",
                        f"within {TARGET_RSS_GROWTH:.0%}",
                        "met" if growth <= TARGET_RSS_GROWTH else f"+{growth:.0%}"))
    return rows


def held_step(step: dict[str, Any]) -> bool:
    """Sustained, and offered: reports written before ``sender_kept_up`` was judged are
    judged here the same way (the sender sent ≥ 95 % of the rate)."""
    kept_up = step.get("sender_kept_up", step["encounters_sent_per_s"] >= SENDER_TOLERANCE * step["rate_offered"])
    return bool(step["sustained"] and kept_up)


def max_held(report: dict[str, Any]) -> float | None:
    return max((s["rate_offered"] for s in report["steps"] if held_step(s)), default=None)


def workers_rows(one: dict[str, Any], two: dict[str, Any]) -> list[Row]:
    a, b = max_held(one), max_held(two)
    if not a or not b:
        return []
    return [Row("two workers against one, highest sustained", f"{b:,.0f} vs {a:,.0f} encounters/s",
                f"{b / a:.2f}× one", "", "")]


def stage_rows(broker: dict[str, Any]) -> list[Row]:
    """Each stage alone on a pre-loaded topic, and the worker's start (``bench/stages.py``)."""
    hop = float(broker["raw_hop_msg_per_s"]["passthrough"])
    rows = [Row("raw aiokafka hop of the stage run", f"{hop:,.0f} msg/s", "1", "", "")]
    for stage in broker["stages"]:
        rate = float(stage["in_per_s"])
        rows.append(Row(f"stage alone: {stage['stage']}", f"{rate:,.0f} records/s", share(rate, hop),
                        f"≥ {TARGET_STAGE_SHARE:.0%} of the hop", times_short(rate / hop, TARGET_STAGE_SHARE)))
    start = broker.get("start_to_first_event", {}).get("median_s")
    if start is not None:
        rows.append(Row("worker start to first event (median of 3)", f"{start:.1f} s", "", f"≤ {TARGET_START_S:.0f} s",
                        "met" if start <= TARGET_START_S else f"{start / TARGET_START_S:.1f}×"))
    return rows


def latency_gap(p99: float, rate: float) -> str:
    if p99 <= TARGET_P99_S:
        return "met" if rate >= TARGET_P99_AT_RATE else f"met at {rate:,.0f}/s"
    return f"p99 {p99 / TARGET_P99_S:.0f}× the target" + (
        "" if rate >= TARGET_P99_AT_RATE else f", at {rate / TARGET_P99_AT_RATE:.0%} of its rate")


def share(value: float, hop: float) -> str:
    return f"{value / hop:.3%}" if hop else ""


def times_short(value: float, target: float) -> str:
    return "met" if value >= target else f"{target / value:.1f}× short" if value else "—"


def render(title: str, rows: Sequence[Row]) -> str:
    header = Row("figure", "value", "vs raw hop", "target", "gap")
    table = [header, *rows]
    widths = [max(len(getattr(r, f)) for r in table) for f in ("figure", "value", "ratio", "target", "gap")]
    lines = [title]
    for n, row in enumerate(table):
        cells = (row.figure, row.value, row.ratio, row.target, row.gap)
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of claims load and bench/stages.py")
    args = parser.parse_args(argv)
    reports = [json.loads(path.read_text()) for path in args.reports if path.exists()]
    missing = [str(path) for path in args.reports if not path.exists()]
    loads = [r for r in reports if "steps" in r]
    by_broker: dict[str, list[Row]] = {}
    for report in loads:
        rows = by_broker.setdefault(str(report["broker"]), [])
        if report["encounters_sent"] >= MEMORY_RUN_ENCOUNTERS:
            rows.extend(memory_rows(report))
        elif report.get("workers", 1) == 1:
            rows.extend(load_rows(report))
        else:
            one = next((r for r in loads if r["broker"] == report["broker"] and r.get("workers", 1) == 1
                        and r["encounters_sent"] < MEMORY_RUN_ENCOUNTERS), None)
            rows.extend(workers_rows(one, report) if one is not None else [])
    for report in reports:
        for broker in report.get("brokers", []):  # bench/stages.py
            by_broker.setdefault(str(broker["broker"]), []).extend(stage_rows(broker))
    for broker, rows in by_broker.items():
        print(render(f"\n{broker}", rows))
    if missing:
        print(f"\nnot found (that benchmark did not run): {', '.join(missing)}", file=sys.stderr)
    return 0 if by_broker else 1


if __name__ == "__main__":
    raise SystemExit(main())
