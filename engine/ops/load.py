"""What `claims load` measures, and how it judges a rate: the open-loop sender, the
samples it takes of the engine (stage rates, lag, latency, CPU and RSS of every process),
whether a step's rate was sustained, and the report with every figure beside its ratio
to the raw aiokafka hop measured on the same broker in the same run."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from engine.runtime.kafka import make_producer, started
from engine.settings import Settings
from engine.wire.topics import Topic
from simulators.ehr import PlannedRecord

#: A step sustains its rate when the engine's backlog grows by less than this share of
#: the offered encounters per second (records of every engine group, a least-squares
#: slope over the step's second half): a backlog that keeps growing is one the engine
#: would never clear.
LAG_GROWTH_TOLERANCE = 0.10
#: A backlog grows when its slope exceeds the tolerance by more than this many standard
#: errors: a growth the readings' own scatter could make is not one.
GROWTH_ERRORS = 1.0
#: A step offered its rate when the sender sent at least this share of it (the driver shares
#: the machine with the engine, and falls behind it on a full one).
SENDER_TOLERANCE = 0.95
#: --find-max: each step offers this many times the last sustained rate.
RAMP_FACTOR = 1.5
#: --find-max stops when the rate that held and the one that did not are this close.
BRACKET = 1.1
#: --find-max goes no lower (encounters per second).
MIN_RATE = 5.0
#: The share of a step after which a process's memory counts as warmed up: the target is an
#: RSS within 10 % of that reading at the end of a long step (tables and caches filled).
RSS_WARM_UP_SHARE = 0.1
#: Points kept of each process's RSS over a step, in the report.
RSS_SERIES_POINTS = 20


@dataclass
class Pace:
    """The sender's target rate (changed between steps) and what it has done."""

    rate: float
    sent: int = 0
    behind_s: float = 0.0  # the most the sender itself fell behind its schedule
    paused: bool = False  # between steps, while the engine clears a backlog


async def send_open_loop(settings: Settings, bootstrap: str, plan: Iterable[PlannedRecord], pace: Pace,
                         stop: asyncio.Event) -> None:
    """Encounters at ``pace.rate`` per second by the wall clock, whatever the engine does
    with them (an open loop: a slow engine builds a backlog, it does not slow the EHR)."""
    topic = settings.topic(Topic.ENCOUNTERS)
    records: Iterator[PlannedRecord] = iter(plan)
    async with started(make_producer(settings, bootstrap)) as producer:
        due = time.monotonic()
        rate = pace.rate
        while not stop.is_set():
            if pace.paused:
                await asyncio.sleep(0.1)  # the driver's own pause between steps
                due = time.monotonic()
                continue
            if pace.rate != rate:  # a new step: its schedule starts now
                rate, due = pace.rate, max(due, time.monotonic())
            chunk = list(itertools.islice(records, max(1, min(500, int(rate / 20)))))
            futures = [await producer.send(topic, value=r.value, key=r.encounter_id.encode()) for r in chunk]
            await asyncio.gather(*futures)
            pace.sent += len(chunk)
            due += len(chunk) / rate
            ahead = due - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing the simulated EHR, not waiting on a race
            else:
                pace.behind_s = max(pace.behind_s, -ahead)


class ProcessWatch:
    """CPU (% of one core, since the last reading) and RSS of named processes."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.processes: dict[str, psutil.Process] = {}
        for name, pid in pids.items():
            self.add(name, pid)

    def add(self, name: str, pid: int) -> None:
        try:
            process = psutil.Process(pid)
            process.cpu_percent(None)  # the first reading starts the interval
            self.processes[name] = process
        except psutil.NoSuchProcess:
            pass

    def read(self) -> dict[str, dict[str, float]]:
        usage: dict[str, dict[str, float]] = {}
        for name, process in self.processes.items():
            try:
                with process.oneshot():
                    usage[name] = {"cpu_percent": round(process.cpu_percent(None), 1),
                                   "rss_mb": round(process.memory_info().rss / 2**20, 1)}
            except psutil.NoSuchProcess:
                continue
        return usage


@dataclass
class Sample:
    """One reading during a step."""

    t_s: float  # since the step began
    sent: int
    lag: int  # records behind, every engine group
    stages: dict[str, dict[str, float]]  # per stage: in_per_s, out_per_s
    processes: dict[str, dict[str, float]]


@dataclass
class Step:
    """One offered rate held for a while, and what the engine did with it."""

    rate: float
    duration_s: float
    samples: list[Sample] = field(default_factory=list)
    latency_s: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: int = 0
    #: The partitions behind when the step ended (``group topic[partition]`` → records): where
    #: a backlog that grew sits.
    behind_at_end: dict[str, int] = field(default_factory=dict)

    def _later_lags(self) -> list[tuple[float, float]]:
        later = [s for s in self.samples if s.t_s >= self.duration_s / 2] or self.samples
        return [(s.t_s, float(s.lag)) for s in later]

    def lag_growth_per_s(self) -> float:
        """The backlog's slope over the step's second half, records per second."""
        return least_squares(self._later_lags())[0]

    def lag_growth_error_per_s(self) -> float:
        """The standard error of that slope: the backlog read from committed offsets jumps by
        a commit's worth of records (several hundred with two workers committing apart)."""
        return least_squares(self._later_lags())[1]

    def sent_per_s(self) -> float:
        """What the sender managed, by the step's last sample."""
        last = self.samples[-1] if self.samples else None
        return last.sent / last.t_s if last is not None and last.t_s > 0 else 0.0

    def sender_kept_up(self) -> bool:
        return self.sent_per_s() >= SENDER_TOLERANCE * self.rate

    def sustained(self) -> bool:
        """The backlog did not grow, and the rate was offered: a sender that fell behind
        offered less than the step says, and a flat backlog then says nothing of the rate."""
        growth, error = least_squares(self._later_lags())
        growth -= GROWTH_ERRORS * error
        return len(self.samples) >= 2 and self.sender_kept_up() and growth <= LAG_GROWTH_TOLERANCE * self.rate

    def figures(self, baseline: float) -> dict[str, Any]:
        last = self.samples[-1] if self.samples else None
        offered = self.sent / self.duration_s if self.duration_s else 0.0
        return {
            "rate_offered": self.rate,
            "encounters_sent_per_s": round(offered, 1),
            "sustained": self.sustained(),
            "sender_kept_up": self.sender_kept_up(),
            "lag_growth_per_s": round(self.lag_growth_per_s(), 1),
            "lag_growth_error_per_s": round(self.lag_growth_error_per_s(), 1),
            "lag": [(round(s.t_s, 1), s.lag) for s in self.samples],
            "behind_at_end": self.behind_at_end,
            "stages": last.stages if last else {},
            "latency_s": self.latency_s,
            "processes": _peak_usage(self.samples),
            "ratios_to_raw_hop": {"encounters_per_s": ratio(offered, baseline)},
        }


def least_squares(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The least-squares slope of (x, y) points and its standard error: (0, 0) for fewer than
    two distinct x, and an error of 0 for fewer than three points."""
    if len(points) < 2:
        return 0.0, 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0, 0.0
    b = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    if len(points) < 3:
        return b, 0.0
    residuals = sum((y - (mean_y + b * (x - mean_x))) ** 2 for x, y in points)
    return b, float((residuals / (len(points) - 2) / spread) ** 0.5)


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 for fewer than two distinct x."""
    return least_squares(points)[0]


def slope_error(points: Sequence[tuple[float, float]]) -> float:
    """The standard error of ``slope``'s least-squares slope; 0 for fewer than three points."""
    return least_squares(points)[1]


def ratio(value: float, baseline: float) -> float | None:
    """``value`` as a share of ``baseline``, to four significant figures (the loop's share
    of a raw hop is a few ten-thousandths)."""
    return float(f"{value / baseline:.4g}") if baseline else None


def next_rate(steps: Sequence[Step], max_rate: float) -> float | None:
    """--find-max: the rate of the next step, or None when the search is over. Up by
    ``RAMP_FACTOR`` while every step held (down by it while none has), then halving the
    gap between the highest rate that held and the lowest above it that did not, until
    the two are within ``BRACKET``."""
    held = [s.rate for s in steps if s.sustained()]
    failed = [s.rate for s in steps if not s.sustained()]
    if not steps:
        return None
    if not failed:
        up = steps[-1].rate * RAMP_FACTOR
        return up if up <= max_rate else None
    if not held:
        down = min(failed) / RAMP_FACTOR
        return down if down >= MIN_RATE else None
    low = max(held)
    above = [rate for rate in failed if rate > low]
    if not above:
        up = low * RAMP_FACTOR
        return up if up <= max_rate and up not in failed else None
    high = min(above)
    return (low + high) / 2 if high / low > BRACKET else None


def max_sustained(steps: Sequence[Step]) -> float | None:
    rates = [s.rate for s in steps if s.sustained()]
    return max(rates) if rates else None


def _peak_usage(samples: Sequence[Sample]) -> dict[str, dict[str, Any]]:
    """Per process: mean CPU over the step; its RSS at the start, after the step's warm-up
    (``RSS_WARM_UP_SHARE``), at the end, the growth since the warm-up, and a thinned series."""
    names = {name for s in samples for name in s.processes}
    usage: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        seen = [(s.t_s, s.processes[name]) for s in samples if name in s.processes]
        rss = [u["rss_mb"] for _, u in seen]
        settled = rss[int(len(rss) * RSS_WARM_UP_SHARE)]
        every = max(1, len(seen) // RSS_SERIES_POINTS)
        usage[name] = {"cpu_percent_mean": round(sum(u["cpu_percent"] for _, u in seen) / len(seen), 1),
                       "rss_mb_first": rss[0], "rss_mb_after_warm_up": settled, "rss_mb_last": rss[-1],
                       "rss_growth_after_warm_up": round(rss[-1] / settled - 1, 3) if settled else None,
                       "rss_mb_series": [(round(t, 1), u["rss_mb"]) for t, u in seen[::every]]}
    return usage


def bytes_per_encounter(bytes_by_topic: Mapping[str, int], encounters: int) -> dict[str, Any]:
    """Record bytes (key, value and headers) the run left on its topics, per encounter."""
    total = sum(bytes_by_topic.values())
    return {"total": round(total / encounters) if encounters else None,
            "by_topic": {topic: round(n / encounters) if encounters else None
                         for topic, n in sorted(bytes_by_topic.items(), key=lambda kv: -kv[1])}}
