"""The closed loop against its baseline, on one broker in one run.

Starts one embedded Tansu broker (``--brokers tansu,kafka``: then a one-node Apache Kafka
too, one after the other; or uses CLAIMS_KAFKA_BOOTSTRAP), measures the raw
aiokafka consume→transform→produce hop there (bench/raw_hop.py), then runs
``claims run --encounters N --rate 0`` on the same broker and prints encounters/s, the
records the engine and payer wrote per second, and both as ratios of the raw hop.
``--guarantees at_least_once,exactly_once`` runs the loop once in each mode on the same
broker (Kafka: Tansu has no transactions), so the cost of exactly once is one ratio.
Machines are noisy: compare the ratios, not the absolute figures across runs.

    python bench/loop.py [--encounters 20000] [--hop-messages 50000] [--brokers tansu,kafka]
                         [--guarantees at_least_once,exactly_once]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.runtime.broker import EmbeddedBroker  # noqa: E402
from engine.runtime.kafka_cluster import KafkaCluster  # noqa: E402
from engine.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HOP_LINE = re.compile(r"hop: bytes passthrough\s+([\d,]+) msg/s")


def hop_ceiling(bootstrap: str, messages: int) -> float:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "raw_hop.py"), "--messages", str(messages)],
        env={**os.environ, "CLAIMS_KAFKA_BOOTSTRAP": bootstrap}, capture_output=True, text=True, timeout=600,
        check=True,
    ).stdout
    print(out.strip())
    match = HOP_LINE.search(out)
    if match is None:
        raise SystemExit("raw_hop.py printed no passthrough figure")
    return float(match.group(1).replace(",", ""))


def closed_loop(bootstrap: str, encounters: int, guarantee: str, prefix: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        summary_file = Path(tmp) / "summary.json"
        subprocess.run(
            [sys.executable, "-m", "engine", "run", "--encounters", str(encounters), "--rate", "0", "--seed", "20000",
             "--no-live", "--no-web", "--summary", str(summary_file)],
            env={**os.environ, "CLAIMS_KAFKA_BOOTSTRAP": bootstrap, "CLAIMS_STATE_DIR": tmp,
                 "CLAIMS_PROCESSING_GUARANTEE": guarantee, "CLAIMS_TOPIC_PREFIX": prefix,
                 "CLAIMS_APP_ID": f"{prefix}claimflow"},
            cwd=ROOT, capture_output=True, timeout=900, check=True,
        )
        return json.loads(summary_file.read_text())  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def started(kind: str, directory: Path) -> AsyncIterator[str]:
    """The broker of one measurement: the embedded Tansu, or a one-node Apache Kafka."""
    if kind == "kafka":
        async with KafkaCluster(directory / "kafka", nodes=1, lib_root=Settings().kafka_lib_dir) as cluster:
            yield cluster.bootstrap_servers
        return
    async with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


def report(name: str, ceiling: float, summary: dict[str, Any]) -> float:
    # Every record the engine's three stages and the payer wrote (claim-status twice per claim).
    written = (summary["coded"] + summary["coding_review"] + summary["dead_lettered"]
               + summary["claims_submitted"] * 2 + summary["duplicates_dropped"]
               + summary["remittances"] * 2 + summary["denied"])
    elapsed = float(summary["elapsed_s"])
    per_s = float(summary["encounters_per_s"])
    print()
    print(f"[{name}] closed loop: {summary['encounters']} encounters in {elapsed:.1f} s "
          f"(+{summary['startup_s']} s start-up), settled={summary['settled']}")
    print(f"{'encounters/s (end to end, 4 hops)':<44} {per_s:>9,.0f}   = {per_s / ceiling:.3%} of the raw hop")
    print(f"{'records written by stages + payer /s':<44} {written / elapsed:>9,.0f}   = "
          f"{written / elapsed / ceiling:.2%} of the raw hop")
    print(f"{'raw aiokafka hop (same broker, same run)':<44} {ceiling:>9,.0f}")
    return per_s


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encounters", type=int, default=20_000)
    parser.add_argument("--hop-messages", type=int, default=50_000)
    parser.add_argument("--brokers", default="tansu",
                        help="comma-separated: tansu, kafka (a one-node Apache Kafka), measured one after the other")
    parser.add_argument("--guarantees", default="at_least_once",
                        help="comma-separated: at_least_once, exactly_once (Kafka only), a loop each, same broker")
    args = parser.parse_args()
    given = os.environ.get("CLAIMS_KAFKA_BOOTSTRAP")
    rates: dict[str, float] = {}
    settled = True
    for kind in ([f"given {given}"] if given else args.brokers.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            context = started(kind, Path(tmp)) if not given else contextlib.nullcontext(given)
            async with context as bootstrap:
                ceiling = hop_ceiling(bootstrap, args.hop_messages)
                for n, guarantee in enumerate(args.guarantees.split(",")):
                    if guarantee == "exactly_once" and kind == "tansu":
                        print(f"[{kind}] exactly_once skipped: Tansu has no transactions (BROKER.md)")
                        continue
                    summary = closed_loop(bootstrap, args.encounters, guarantee, f"bench{n}.")
                    rates[f"{kind} {guarantee}"] = report(f"{kind} {guarantee}", ceiling, summary)
                    settled = settled and bool(summary["settled"])
    if len(rates) > 1:
        base = next(iter(rates.values()))
        print()
        print("encounters/s, same run: " + ", ".join(f"{k} {v:,.0f} ({v / base:.2f}x)" for k, v in rates.items()))
    return 0 if settled else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
