"""Each stage alone on a pre-loaded topic, as a ratio of the raw hop; and start to first event.

On one broker in one run (the embedded Tansu; ``--brokers tansu,kafka``: then a one-node
Apache Kafka too, one after the other; or the broker CLAIMS_KAFKA_BOOTSTRAP names):

1. the raw aiokafka hop (bench/raw_hop.py in a subprocess): the baseline;
2. the closed loop once (``claims run --encounters N --rate 0``, seed 20000, its own state
   directory and topic prefix), so that every topic holds real events of the real code path;
3. each group of stages that share state (``stage_groups``: the worker's and the payer
   simulator's), alone, downstream first, in a child process: a faust app from
   ``make_faust_app`` with that group's batch agent only (``add_batch_agent`` with
   ``run_group``, as ``add_stages`` makes it) and the tables its stages declare, under a fresh
   app id (a new consumer group, empty tables) so it reads its input topics from the
   beginning, up to their end offsets read (fetch high watermark) just before it started.
   Timed from the first batch handed to the stage until the last batch of those records is
   done (outputs and changelog records acked), and, as well, until the group's committed
   offsets reach the end offsets (faust commits once a second: up to 1 s later);
4. start to first event: ``claims worker`` (as ``claims run`` starts it) under a fresh app
   id on the loaded topics, from the spawn to its first record on ``coded``; three times.

Beside each figure, the CPU the machine's other processes used meanwhile: on a shared
machine another user's work skews a figure, and this says when it did.

    python bench/stages.py [--encounters 5000] [--hop-messages 50000] [--brokers tansu,kafka]
                           [--startup-runs 3] [--report FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psutil  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from loop import HOP_LINE, started  # noqa: E402

import engine.runtime.faust_app as faust_app  # noqa: E402
from engine.cli.run import start_worker, stop_processes  # noqa: E402
from engine.reference.codesets import warm_up  # noqa: E402
from engine.runtime.broker import _die_with_parent  # noqa: E402
from engine.runtime.faust_app import (  # noqa: E402
    GroupedStringTable,
    add_batch_agent,
    make_faust_app,
    run_app,
    string_table,
)
from engine.runtime.kafka import (  # noqa: E402
    assign_all,
    connection_environment,
    make_admin,
    make_consumer,
    resolve_idempotence,
)
from engine.runtime.staged_state import StagedTable, StateJournal  # noqa: E402
from engine.runtime.stages import SourceMessage, Stage, StageResult, run_group, stage_groups  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.wire.codec import default_codec  # noqa: E402
from engine.wire.topics import Table, Topic, apply_topics, load_topics  # noqa: E402
from engine.worker.stages import STAGES, TABLES, WorkerContext  # noqa: E402
from simulators.payer.app import PAYER_STAGES, PayerRuntime  # noqa: E402

SEED = 20_000  # bench/loop.py's
AVRO_LINE = re.compile(r"hop: Avro decode\+encode \(Codec, ClaimSubmitted\)\s+([\d,]+) msg/s")
TARGET_RATIO = 0.10  # "each stage alone, on a pre-loaded topic: >= 10 % of the raw hop"
TARGET_STARTUP_S = 5.0  # "start to first event <= 5 s"
#: Groups by their first stage, downstream first: a stage's outputs then land on topics whose
#: readers were measured already, but for a loop: the claim stage asks eligibility again (its
#: answers table is empty), and payer-eligibility, after it, reads and counts those 270s too.
ORDER = ("posting", "payer-appeals", "payer", "payer-intake", "claims", "payer-eligibility", "coding")
POLL_S = 0.05  # committed offsets and output records are polled this often
STOP_S = 20.0  # a child's SIGTERM → SIGKILL grace

#: Every child started here; stopped whatever way the run ends (they also die with us: PDEATHSIG).
CHILDREN: list[subprocess.Popen[bytes]] = []


class OthersCpu(threading.Thread):
    """Once a second, the CPU of every process that is not this run's (not us, not our
    descendants), in % of one core: on a shared machine another user's work skews a figure,
    and this says when it did."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="others-cpu")
        self.samples: list[tuple[float, float]] = []  # (time, % of one core since the previous sample)
        self.stop = threading.Event()

    def run(self) -> None:
        last: dict[int, float] = {}
        then = time.time()
        while not self.stop.wait(1.0):
            mine = {os.getpid(), *(child.pid for child in psutil.Process().children(recursive=True))}
            now, seen, others = time.time(), {}, 0.0
            for process in psutil.process_iter(["cpu_times"]):
                times = process.info["cpu_times"]
                if times is None:
                    continue
                seen[process.pid] = times.user + times.system
                if process.pid not in mine and process.pid in last:
                    others += seen[process.pid] - last[process.pid]
            if last:
                self.samples.append((now, round(others / (now - then) * 100, 1)))
            last, then = seen, now

    def mean(self, since: float = 0.0, until: float = float("inf")) -> float | None:
        """Mean of the samples taken between ``since`` and ``until`` (and the one just after)."""
        inside = [cpu for t, cpu in self.samples if since <= t <= until + 1.0]
        return round(statistics.mean(inside), 1) if inside else None


# --- the groups of stages ------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Stages that share state, run by one batch agent (``stage_groups``), of one faust app."""

    app: str  # "worker" (engine/worker/stages.py) or "payer" (simulators/payer/app.py)
    stages: tuple[Stage[Any], ...]

    @property
    def key(self) -> str:
        return self.stages[0].name

    @property
    def name(self) -> str:
        return "+".join(stage.name for stage in self.stages)

    @property
    def tables(self) -> frozenset[str]:
        return frozenset(table for stage in self.stages for table in stage.state)

    def sources(self, settings: Settings) -> list[str]:
        return list(dict.fromkeys(settings.topic(stage.source) for stage in self.stages))


def groups() -> list[Group]:
    found = [Group("worker", g) for g in stage_groups(STAGES)] + [Group("payer", g) for g in stage_groups(PAYER_STAGES)]
    rank = {key: n for n, key in enumerate(ORDER)}
    return sorted(found, key=lambda group: rank.get(group.key, len(ORDER)))


def group_of(key: str) -> Group:
    return next(group for group in groups() if group.key == key)


# --- the child: one group of stages alone ---------------------------------------------------------


class Untouched(MutableMapping[str, str]):
    """A worker table the group's stages do not declare: any use would mean the stage is not
    alone after all, so it raises (the stage dead-letters the event and logs the error)."""

    def __init__(self, table: str) -> None:
        self.table = table

    def _refuse(self) -> NoReturn:
        raise RuntimeError(f"table {self.table} used outside the declared state of the stages measured")

    def __getitem__(self, key: str) -> str:
        self._refuse()

    def __setitem__(self, key: str, value: str) -> None:
        self._refuse()

    def __delitem__(self, key: str) -> None:
        self._refuse()

    def __iter__(self) -> Iterator[str]:
        self._refuse()

    def __len__(self) -> int:
        self._refuse()


StageFn = Callable[[Sequence[SourceMessage]], StageResult]


def append_line(path: Path, **fields: object) -> None:
    with path.open("a") as out:
        out.write(json.dumps(fields) + "\n")


class BatchLog:
    """The group's stage function, timed: one JSON line per batch with the wall time and the
    process's CPU seconds when it was handed over and when the stage function returned, the
    records handed over, those below the end offsets measured before the start ("in") and what
    the stage emitted for those ("out": outputs and dead letters, not changelog records)."""

    def __init__(self, path: Path, ends: dict[tuple[str, int], int], stage: StageFn) -> None:
        self.path, self.ends, self.stage = path, ends, stage

    def __call__(self, messages: Sequence[SourceMessage]) -> StageResult:
        t, cpu = time.time(), time.process_time()
        result = self.stage(messages)
        inside = [emits for message, emits in result.outputs
                  if message.offset < self.ends.get((message.topic, message.partition), 0)]
        append_line(self.path, event="batch", t=t, cpu=cpu, done=time.time(), n=len(messages),
                    inside=len(inside), out=sum(len(emits) for emits in inside))
        return result


def stage_app(group: Group, settings: Settings, bootstrap: str, log: Callable[[StageFn], BatchLog]) -> Any:
    """The faust app of ``group`` alone, built as ``make_app`` / ``make_payer_app`` build theirs
    (their tables limited to the group's, the payer's release timer left out: time scale 0)."""
    codec = default_codec(settings.schemas_dir)
    context: Any
    if group.app == "worker":
        app = make_faust_app(settings, settings.app_id, bootstrap)
        tables: dict[Table, MutableMapping[str, str]] = {
            table: StagedTable(string_table(app, table)) if table in group.tables else Untouched(table)
            for table in TABLES}
        context = WorkerContext.load(settings, codec, tables)
        warm_up()
    else:
        app = make_faust_app(settings, settings.payer_app_id, bootstrap)
        context = PayerRuntime(settings, codec)
        if Table.PAYER_MEMBERS in group.tables:
            context.member_table = string_table(app, Table.PAYER_MEMBERS, GroupedStringTable)
    stage = functools.partial(run_group, group.stages, context, codec, topic_name=settings.topic)
    add_batch_agent(app, settings, codec, group.key, [stage.source for stage in group.stages], log(stage))
    return app


def time_batches(app: Any, stats: Path) -> None:
    """Log when each batch is done and when the app got its partitions and recovered its
    tables. ``add_batch_agent`` awaits ``apply_and_acknowledge`` last in a batch (the outputs
    acked, the table writes applied and their changelog records acked): wrapped in this
    child only, it marks the moment the batch's offsets may be committed."""
    original = faust_app.apply_and_acknowledge

    async def timed(app: Any, journal: StateJournal, delivered: Callable[[SourceMessage], bool]) -> None:
        await original(app, journal, delivered)
        append_line(stats, event="acked", t=time.time(), cpu=time.process_time())

    faust_app.apply_and_acknowledge = timed

    async def assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
        append_line(stats, event="assigned", t=time.time())

    async def recovered(sender: Any, *args: Any, **kwargs: Any) -> None:
        append_line(stats, event="recovered", t=time.time())

    app.on_partitions_assigned.connect(assigned)
    app.on_rebalance_complete.connect(recovered)


def child(key: str, stats: Path, ends_file: Path) -> int:
    """The child process: settings from the environment as ``claims worker`` reads them."""
    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = asyncio.run(resolve_idempotence(settings, settings.bootstrap_servers))
    ends = {(topic, int(p)): end for topic, parts in json.loads(ends_file.read_text()).items()
            for p, end in parts.items()}
    log: Callable[[StageFn], BatchLog] = functools.partial(BatchLog, stats, ends)
    app = stage_app(group_of(key), settings, settings.bootstrap_servers, log)
    time_batches(app, stats)
    append_line(stats, event="built", t=time.time(), cpu=time.process_time())
    run_app(app, settings)
    return 0


# --- the parent: broker, baseline, loop, stages --------------------------------------------------


def run_child(argv: list[str], env: dict[str, str], timeout_s: float) -> str:
    """Run a command to its end (its stdout back), bounded; killed if we stop first."""
    with subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, start_new_session=True, preexec_fn=_die_with_parent) as process:
        CHILDREN.append(process)
        try:
            out, err = process.communicate(timeout=timeout_s)
        except BaseException:
            process.kill()
            process.wait()
            raise
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:4])} exited with {process.returncode}:\n{err.decode()[-3000:]}")
    return out.decode()


def raw_hop(bootstrap: str, messages: int) -> dict[str, float]:
    """bench/raw_hop.py on ``bootstrap``: the passthrough hop (the baseline) and the Avro hop."""
    out = run_child([sys.executable, str(ROOT / "bench" / "raw_hop.py"), "--messages", str(messages)],
                    {**os.environ, "CLAIMS_KAFKA_BOOTSTRAP": bootstrap}, 120 + messages / 500)
    print(out.strip())
    figures = {}
    for name, pattern in (("passthrough", HOP_LINE), ("avro", AVRO_LINE)):
        match = pattern.search(out)
        if match is None:
            raise SystemExit(f"raw_hop.py printed no {name} figure")
        figures[name] = float(match.group(1).replace(",", ""))
    return figures


def preload(settings: Settings, encounters: int) -> dict[str, Any]:
    """The closed loop once (as bench/loop.py runs it): every topic fills with real events."""
    summary = settings.state_dir / "loop-summary.json"
    timeout_s = 120 + encounters / 20
    env = {**os.environ, "CLAIMS_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
           "CLAIMS_STATE_DIR": str(settings.state_dir), "CLAIMS_PROCESSING_GUARANTEE": "at_least_once",
           "CLAIMS_TOPIC_PREFIX": settings.topic_prefix, "CLAIMS_APP_ID": f"{settings.topic_prefix}loop"}
    run_child([sys.executable, "-m", "engine", "run", "--encounters", str(encounters), "--rate", "0", "--seed",
               str(SEED), "--no-live", "--no-web", "--timeout", str(timeout_s), "--summary", str(summary)],
              env, timeout_s + 60)
    return json.loads(summary.read_text())  # type: ignore[no-any-return]


async def end_offsets(settings: Settings, topics: list[str], timeout_s: float = 30.0) -> dict[TopicPartition, int]:
    """Each partition's end offset, from the fetch high watermark (Tansu's ListOffsets(latest)
    is wrong, BROKER.md)."""
    consumer = make_consumer(settings, fetch_max_wait_ms=10, max_partition_fetch_bytes=1024)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout_s):
            partitions = await assign_all(consumer, topics)
            ends: dict[TopicPartition, int] = {}
            while len(ends) < len(partitions):
                await consumer.getmany(timeout_ms=20, max_records=1)
                ends = {tp: hw for tp in partitions if (hw := consumer.highwater(tp)) is not None}
            return ends
    finally:
        await consumer.stop()


async def committed(admin: AIOKafkaAdminClient, group_id: str, partitions: list[TopicPartition]) -> dict[
        TopicPartition, int]:
    """The group's committed offsets (0 where it never committed)."""
    answer = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
    return {tp: max(meta.offset, 0) if (meta := answer.get(tp)) is not None else 0 for tp in partitions}


def spawn(settings: Settings, argv: list[str], log_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    """A child with the environment ``start_worker`` gives ``claims run``'s children."""
    env = {**os.environ, "CLAIMS_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
           "CLAIMS_TOPIC_PREFIX": settings.topic_prefix, "CLAIMS_APP_ID": settings.app_id,
           "CLAIMS_SEED": str(settings.seed), "CLAIMS_STATE_DIR": str(settings.state_dir),
           "CLAIMS_IDEMPOTENCE": settings.idempotence,
           "CLAIMS_PROCESSING_GUARANTEE": settings.processing_guarantee, **connection_environment(settings), **extra}
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
    CHILDREN.append(process)
    return process


def log_tail(log_path: Path, lines: int = 30) -> str:
    """The end of a child's log (it goes with the temporary directory)."""
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def log_errors(log_path: Path) -> list[str]:
    """The lines of a child's log that say a stage failed on an event (dead-lettered it)."""
    return [line for line in log_path.read_text(errors="replace").splitlines()
            if "unexpected error" in line or "outside the declared state" in line or "Traceback" in line]


@dataclass
class StageFigures:
    stage: str
    app_id: str
    input_records: int  # the input topics' end offsets before the child started
    records_out: int  # what the stage emitted for those records (outputs and dead letters)
    built_s: float  # spawn → the app built (imports, reference data)
    assigned_s: float | None  # spawn → partitions assigned (the group join)
    recovered_s: float | None  # spawn → tables recovered (faust's rebalance complete)
    startup_s: float  # spawn → first batch handed to the stage
    window_s: float  # first batch handed → the last batch holding input records acked
    in_per_s: float  # input_records / window_s
    out_per_s: float
    ratio: float  # in_per_s / the raw passthrough hop
    commit_window_s: float  # first batch handed → committed offsets seen at the end offsets
    in_per_s_to_commit: float  # input_records / commit_window_s
    ratio_to_commit: float
    in_per_s_from_spawn: float  # input_records / (spawn → committed)
    cpu_s: float  # the child's CPU over the window (all its threads)
    cpu_us_per_record: float
    stage_fn_s: float  # wall time inside the stage functions (decode and logic; outputs are encoded on delivery)
    batches: int  # batches holding input records
    others_cpu_percent: float | None = None  # other processes on the machine meanwhile (% of one core)
    errors: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """One batch as the child logged it: handed to the stage, done (``acked``)."""

    t: float
    cpu: float
    done: float  # the stage function returned
    inside: int  # records below the end offsets
    out: int
    acked_t: float | None = None
    acked_cpu: float | None = None


def read_stats(stats: Path) -> tuple[dict[str, float], list[Batch]]:
    """The child's events (first time of each) and its batches, each with its ``acked`` line."""
    events: dict[str, float] = {}
    batches: list[Batch] = []
    for line in map(json.loads, stats.read_text().splitlines()):
        if line["event"] == "batch":
            batches.append(Batch(line["t"], line["cpu"], line["done"], line["inside"], line["out"]))
        elif line["event"] == "acked" and batches:
            batches[-1].acked_t, batches[-1].acked_cpu = line["t"], line["cpu"]
        else:
            events.setdefault(line["event"], line["t"])
    return events, batches


def figures(group: Group, app_id: str, total: int, hop: float, t_spawn: float, t_commit: float, stats: Path,
            errors: list[str]) -> StageFigures:
    events, batches = read_stats(stats)
    first, inside = batches[0], [batch for batch in batches if batch.inside]
    last = inside[-1]
    if last.acked_t is None or last.acked_cpu is None:
        raise SystemExit(f"{group.name}: its last batch of input records was never acked")
    handed = sum(batch.inside for batch in batches)
    if handed != total:
        errors.append(f"the stage was handed {handed} input records below the end offsets, expected {total}")
    window, commit_window = last.acked_t - first.t, t_commit - first.t
    out = sum(batch.out for batch in inside)
    cpu = last.acked_cpu - first.cpu

    def since_spawn(event: str) -> float | None:
        return round(events[event] - t_spawn, 2) if event in events else None

    return StageFigures(
        stage=group.name, app_id=app_id, input_records=total, records_out=out,
        built_s=round(events["built"] - t_spawn, 2), assigned_s=since_spawn("assigned"),
        recovered_s=since_spawn("recovered"), startup_s=round(first.t - t_spawn, 2), window_s=round(window, 3),
        in_per_s=round(total / window, 1), out_per_s=round(out / window, 1), ratio=round(total / window / hop, 4),
        commit_window_s=round(commit_window, 3), in_per_s_to_commit=round(total / commit_window, 1),
        ratio_to_commit=round(total / commit_window / hop, 4),
        in_per_s_from_spawn=round(total / (t_commit - t_spawn), 1), cpu_s=round(cpu, 3),
        cpu_us_per_record=round(cpu / total * 1e6, 1), stage_fn_s=round(sum(b.done - b.t for b in inside), 3),
        batches=len(inside), errors=errors)


async def measure_group(settings: Settings, group: Group, hop: float, timeout_s: float, join_timeout_s: float,
                        others: OthersCpu) -> StageFigures | None:
    """``group`` alone under a fresh app id, on what its input topics hold now."""
    ends = await end_offsets(settings, group.sources(settings))
    total = sum(ends.values())
    if total == 0:
        print(f"  {group.name}: its input topics are empty, skipped")
        return None
    app_id = f"{settings.topic_prefix}{group.key}-{uuid.uuid4().hex[:6]}"
    alone = replace(settings, app_id=app_id)
    await apply_topics(alone, load_topics(alone))  # its changelogs, as `claims topics apply` would
    group_id = alone.payer_app_id if group.app == "payer" else app_id
    stats, ends_file = settings.state_dir / f"{app_id}.jsonl", settings.state_dir / f"{app_id}.ends.json"
    by_topic: dict[str, dict[str, int]] = {}
    for tp, end in ends.items():
        by_topic.setdefault(tp.topic, {})[str(tp.partition)] = end
    ends_file.write_text(json.dumps(by_topic))
    log_path = settings.state_dir / f"{app_id}.log"
    waiting = [tp for tp, end in ends.items() if end > 0]
    t_spawn = time.time()
    process = spawn(alone, [sys.executable, str(Path(__file__).resolve()), "--child", group.key, "--stats", str(stats),
                            "--ends", str(ends_file)], log_path, CLAIMS_PAYER_TIME_SCALE="0")
    admin = make_admin(settings)
    await admin.start()
    try:
        async with asyncio.timeout(join_timeout_s + timeout_s):
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"{group.name} exited with {process.returncode}:\n{log_tail(log_path)}")
                offsets = await committed(admin, group_id, waiting)
                if all(offsets[tp] >= ends[tp] for tp in waiting):
                    t_commit = time.time()
                    break
                await asyncio.sleep(POLL_S)
    finally:
        await admin.close()
        stop_processes([process], STOP_S)
    measured = figures(group, app_id, total, hop, t_spawn, t_commit, stats, log_errors(log_path))
    measured.others_cpu_percent = others.mean(t_spawn, t_commit)
    return measured


@dataclass
class Startup:
    app_id: str
    encounters_waiting: int
    first_output_s: float  # spawn → CreateTime of the first record the new worker wrote on `coded`
    first_seen_s: float  # spawn → that record read here
    first_commit_s: float | None  # spawn → the group's first committed offset on `encounters`
    others_cpu_percent: float | None = None  # other processes on the machine meanwhile (% of one core)


async def first_event(settings: Settings, timeout_s: float, others: OthersCpu) -> Startup:
    """``claims worker`` as ``claims run`` starts it (``start_worker``), under a fresh app id,
    on topics that hold encounters already: seconds from the spawn to its first coded event."""
    coded, encounters = settings.topic(Topic.CODED), settings.topic(Topic.ENCOUNTERS)
    ends = await end_offsets(settings, [coded, encounters])
    app_id = f"{settings.topic_prefix}worker-{uuid.uuid4().hex[:6]}"
    worker = replace(settings, app_id=app_id)
    await apply_topics(worker, load_topics(worker))  # `claims run` applies the topics before it starts children
    sources = [tp for tp in ends if tp.topic == encounters]
    consumer: AIOKafkaConsumer = make_consumer(settings, fetch_max_wait_ms=50)
    admin = make_admin(settings)
    await consumer.start()
    await admin.start()
    log_path = settings.state_dir / f"{app_id}.log"
    first_output: float | None = None
    first_seen: float | None = None
    first_commit: float | None = None
    try:
        outputs = [tp for tp in ends if tp.topic == coded]
        consumer.assign(outputs)
        for tp in outputs:
            consumer.seek(tp, ends[tp])
        t_spawn = time.time()
        process = start_worker(worker, settings.bootstrap_servers, ("worker",), log_path)
        CHILDREN.append(process)
        try:
            async with asyncio.timeout(timeout_s):
                while first_output is None or first_commit is None:
                    if process.poll() is not None:
                        raise SystemExit(f"claims worker exited with {process.returncode}:\n{log_tail(log_path)}")
                    fetched = await consumer.getmany(timeout_ms=int(POLL_S * 1000))
                    records = [record for batch in fetched.values() for record in batch]
                    if records and first_output is None:
                        first_seen = time.time() - t_spawn
                        first_output = min(record.timestamp for record in records) / 1000 - t_spawn
                    if first_commit is None and any((await committed(admin, app_id, sources)).values()):
                        first_commit = time.time() - t_spawn
        except TimeoutError:
            if first_output is None:
                raise
        finally:
            stop_processes([process], STOP_S)
    finally:
        await consumer.stop()
        await admin.close()
    assert first_output is not None and first_seen is not None
    return Startup(app_id, sum(ends[tp] for tp in sources), round(first_output, 2), round(first_seen, 2),
                   None if first_commit is None else round(first_commit, 2), others.mean(t_spawn, time.time()))


# --- the report ------------------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def table(kind: str, hop: dict[str, float], hop_others: float | None, stages: list[StageFigures],
          startups: list[Startup]) -> str:
    rows = [f"[{kind}] raw aiokafka hop, bytes passthrough: {hop['passthrough']:,.0f} msg/s "
            f"(Avro decode+encode: {hop['avro']:,.0f}; other processes {percent(hop_others)} % CPU); "
            f"target per stage {TARGET_RATIO:.0%} = {hop['passthrough'] * TARGET_RATIO:,.0f} records/s",
            f"{'stage':<26} {'input records':>13} {'records in/s':>12} {'ratio to raw hop':>16} {'target 10 %':>11} "
            f"{'start-up s':>10} | {'to commit/s':>11} {'out/s':>7} {'CPU µs/rec':>10} {'in stage fn':>11} "
            f"{'others % CPU':>12}"]
    for s in stages:
        rows.append(f"{s.stage:<26} {s.input_records:>13,} {s.in_per_s:>12,.0f} {s.ratio:>16.2%} "
                    f"{'met' if s.ratio >= TARGET_RATIO else 'NOT met':>11} {s.startup_s:>10.1f} | "
                    f"{s.in_per_s_to_commit:>11,.0f} {s.out_per_s:>7,.0f} {s.cpu_us_per_record:>10,.0f} "
                    f"{s.stage_fn_s / s.window_s:>11.0%} {percent(s.others_cpu_percent):>12}")
        rows += [f"    ! {error}" for error in s.errors[:3]]
    firsts = sorted(startup.first_output_s for startup in startups)
    median = statistics.median(firsts)
    rows.append(f"{'claims worker, whole':<26} {startups[0].encounters_waiting:>13,} {'start to first event':>29} "
                f"{'met' if median <= TARGET_STARTUP_S else 'NOT met':>11} {median:>10.1f} | median of "
                f"{len(firsts)}: {', '.join(f'{s:.1f}' for s in firsts)} s; others % CPU "
                f"{', '.join(percent(s.others_cpu_percent) for s in startups)}")
    return "\n".join(rows)


async def measure_broker(kind: str, bootstrap: str, args: argparse.Namespace, directory: Path,
                         others: OthersCpu) -> dict[str, Any]:
    settings = replace(Settings(), bootstrap_servers=bootstrap, topic_prefix=f"bench-stages-{uuid.uuid4().hex[:6]}.",
                       state_dir=directory / "state", seed=SEED, processing_guarantee="at_least_once")
    settings.state_dir.mkdir(parents=True)
    print(f"[{kind}] broker at {bootstrap}; topics {settings.topic_prefix}*")
    t_hop = time.time()
    hop = raw_hop(bootstrap, args.hop_messages)
    hop_others = others.mean(t_hop, time.time())
    started_at = time.monotonic()
    summary = preload(settings, args.encounters)
    print(f"[{kind}] closed loop: {summary['encounters']} encounters in {summary['elapsed_s']} s, "
          f"settled={summary['settled']} ({time.monotonic() - started_at:.0f} s with start and stop)")
    stages = []
    for group in groups():
        figures = await measure_group(settings, group, hop["passthrough"], args.stage_timeout, args.join_timeout,
                                      others)
        if figures is not None:
            print(f"  {figures.stage}: {figures.input_records:,} records in {figures.window_s:.2f} s = "
                  f"{figures.in_per_s:,.0f}/s ({figures.ratio:.2%} of the raw hop); start-up {figures.startup_s} s "
                  f"(app built {figures.built_s} s, partitions assigned {figures.assigned_s} s)")
            stages.append(figures)
    startups = [await first_event(settings, args.join_timeout, others) for _ in range(args.startup_runs)]
    print()
    print(table(kind, hop, hop_others, stages, startups))
    print()
    return {"broker": kind, "bootstrap": bootstrap, "raw_hop_msg_per_s": hop, "hop_messages": args.hop_messages,
            "raw_hop_others_cpu_percent": hop_others,
            "loop": {key: summary.get(key) for key in ("encounters", "elapsed_s", "encounters_per_s", "startup_s",
                                                       "settled")},
            "target_ratio": TARGET_RATIO, "stages": [asdict(s) for s in stages],
            "start_to_first_event": {"median_s": statistics.median(s.first_output_s for s in startups),
                                     "target_s": TARGET_STARTUP_S, "runs": [asdict(s) for s in startups]}}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: the children and the broker stopped on the way out


async def measure(args: argparse.Namespace, others: OthersCpu) -> list[dict[str, Any]]:
    given = os.environ.get("CLAIMS_KAFKA_BOOTSTRAP")
    reports = []
    for kind in ([f"given {given}"] if given else args.brokers.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
            context = started(kind, Path(tmp)) if not given else contextlib.nullcontext(given)
            async with context as bootstrap:
                reports.append(await measure_broker(kind, bootstrap, args, Path(tmp), others))
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--encounters", type=int, default=5_000, help="the closed loop that fills the topics")
    parser.add_argument("--hop-messages", type=int, default=50_000, help="messages of the raw hop")
    parser.add_argument("--brokers", default="tansu",
                        help="comma-separated: tansu, kafka (a one-node Apache Kafka), measured one after the other")
    parser.add_argument("--stage-timeout", type=float, default=300.0, help="seconds a stage may take, join excluded")
    parser.add_argument("--join-timeout", type=float, default=60.0, help="seconds to the first event of a child")
    parser.add_argument("--startup-runs", type=int, default=3, help="whole-worker start-ups measured (median)")
    parser.add_argument("--report", type=Path, help="write the figures as JSON here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ends", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.stats, args.ends)
    if min(args.encounters, args.hop_messages, args.startup_runs) < 1:
        parser.error("--encounters, --hop-messages and --startup-runs must be at least 1")
    signal.signal(signal.SIGTERM, _terminate)
    wall = time.monotonic()
    others = OthersCpu()
    others.start()
    try:
        reports = asyncio.run(measure(args, others))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        others.stop.set()
        stop_processes([p for p in CHILDREN if p.poll() is None], STOP_S)
    print(f"({time.monotonic() - wall:.0f} s wall; other processes on the machine meanwhile: "
          f"{others.mean()}% of one core on average, {max((c for _, c in others.samples), default=0):.0f}% at most)")
    if args.report is not None:
        args.report.write_text(json.dumps({"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                           "encounters": args.encounters, "others_cpu_percent": others.mean(),
                                           "brokers": reports}, indent=2) + "\n")
    return 0  # a benchmark: it reports the targets, it does not fail on them


if __name__ == "__main__":
    sys.exit(main())
