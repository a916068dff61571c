"""PHI stays in the events: a seeded closed loop (`claims run`: EHR simulator, engine
worker, payer simulator, coder simulator) with debug logging on in every process, bad
encounters mixed in, and then every place an operator or a dashboard sees — each log
line of each process, the Prometheus metrics and the status JSON, the run's summary and
console output, every dead letter's reason — is searched for the patients' names, birth
dates, member ids and clinical notes the run sent (read back from its master data and
its encounters topic). Codec and stage errors on corrupt input are searched the same way.

It found faust's and aiokafka's debug lines printing every record's key and value
(table changelogs: coded encounters, payer|member keys; produced encounters);
``engine/runtime/logs.py`` now rewrites those lines without the content.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from engine.cli.run import RunOptions, run_closed_loop
from engine.model.events import DeadLetter, Encounter
from engine.ops.monitor import Monitor
from engine.runtime.kafka import read_topic
from engine.runtime.logs import OncePerInterval
from engine.runtime.stages import SourceMessage
from engine.settings import Settings
from engine.wire.codec import UndecodableEvent, default_codec
from engine.wire.topics import Topic
from engine.worker.stages import STAGE, TABLES, WorkerContext
from simulators.ehr import plan_encounters
from simulators.payer.adjudication import PayerBook
from tests.fixtures.kafka import Backend, isolated_settings
from tests.fixtures.phi import PhiSet

pytestmark = pytest.mark.integration

N_ENCOUNTERS = 300
SEED = 23
BAD_RATE = 0.1  # undecodable and truncated → dead letters; coding errors → coding review
LAPSED_RATE = INCOMPLETE_RATE = 0.03  # eligibility holds, scrubber stops: more paths that handle a patient
RUN_TIMEOUT_S = 90.0
#: DEBUG lines each process must have written, so a clean scan means something. The worker
#: sends its outputs and table records in one batch per partition, and aiokafka writes a
#: debug line per batch, not per record: 218–236 in its runs of 2026-12-07 (300 before).
MIN_DEBUG_LINES = {"parent": 10, "worker.log": 150, "payer.log": 150}
#: The children's log files (engine/settings.py: worker_log_file, payer_log_file).
CHILD_LOGS = ("worker.log", "payer.log")
DEBUG_LINE = re.compile(r"\[DEBUG\]| DEBUG ")

@dataclass
class PhiRun:
    """What one seeded run left behind, and the PHI it sent."""

    settings: Settings
    summary: dict[str, Any]
    phi: PhiSet
    logs: dict[str, list[str]]  # source → lines: "parent", "console", and each *.log under the state dir
    debug_lines: Counter[str]
    dead_letters: list[DeadLetter]
    encounters: int  # records on the encounters topic that decoded
    metrics: str
    status: str
    run_s: float


class _Lines(logging.Handler):
    """Every record of this process — the run itself and the EHR and coder simulators,
    which run in it — formatted as a log file has it, traceback included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []
        self.debug = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.extend(self.format(record).splitlines())
            self.debug += record.levelno == logging.DEBUG
        except Exception:
            self.handleError(record)


@pytest_asyncio.fixture(scope="module")
async def phi_run(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PhiRun]:
    """The run, once per broker, shared by the checks below."""
    settings = isolated_settings(backend.bootstrap_servers, tmp_path_factory.mktemp("phi"), log_level="DEBUG")
    options = RunOptions(encounters=N_ENCOUNTERS, rate=None, seed=SEED, bad_rate=BAD_RATE, resend_rate=0.02,
                         summary_path=None, timeout_s=RUN_TIMEOUT_S, live=False, lapsed_rate=LAPSED_RATE,
                         incomplete_rate=INCOMPLETE_RATE)
    console = io.StringIO()
    parent = _Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(parent)
    root.setLevel(logging.DEBUG)
    _fresh_client_log_throttle()
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("CLAIMS_LOG_LEVEL", "DEBUG")  # the children read their level from the environment
            started = time.monotonic()
            summary = await run_closed_loop(settings, options, Console(file=console, width=200))
            run_s = time.monotonic() - started
        codec = default_codec(settings.schemas_dir)
        phi = PhiSet()
        phi.add_master_data(settings.master_data_dir)  # every patient the payer was told of
        decoded = 0
        for record in await read_topic(settings, settings.topic(Topic.ENCOUNTERS)):
            try:
                enc = codec.decode(record.value, Encounter)
            except UndecodableEvent:
                continue  # the bad ones on purpose; their patients are in the master data
            phi.add_encounter(enc)  # what was sent, mistyped member ids and notes included
            decoded += 1
        letters = [codec.decode(r.value, DeadLetter)
                   for r in await read_topic(settings, settings.topic(Topic.DEAD_LETTER))]
        metrics, status = await _scrape(settings)
    finally:
        root.removeHandler(parent)
        root.setLevel(level)
    logs = {"parent": parent.lines, "console": console.getvalue().splitlines()}
    debug = Counter({"parent": parent.debug})
    for path in sorted(settings.state_dir.rglob("*.log")):
        name = str(path.relative_to(settings.state_dir))
        logs[name] = path.read_text(errors="replace").splitlines()
        debug[name] = sum(1 for line in logs[name] if DEBUG_LINE.search(line))
    yield PhiRun(settings, summary, phi, logs, debug, letters, decoded, metrics, status, run_s)


def _fresh_client_log_throttle() -> None:
    """Each run logs as from a fresh process, as `claims run` does. The client loggers'
    ``OncePerInterval`` (engine/runtime/logs.py) lives as long as this test process: without
    this, what the second broker's run may log depends on how long ago the first logged it."""
    loggers = [logger for logger in list(logging.Logger.manager.loggerDict.values())
               if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for throttle in (f for f in logger.filters if isinstance(f, OncePerInterval)):
            throttle._last.clear()


async def _scrape(settings: Settings) -> tuple[str, str]:
    """``/metrics`` and ``/status`` as the ops pages serve them (engine/web/dashboard.py:
    ``generate_latest`` of the monitor's registry), from a monitor that read the whole run."""
    monitor = Monitor(settings, settings.bootstrap_servers, default_codec(settings.schemas_dir))
    await monitor.open()
    try:
        await monitor.readback.read_all(timeout_s=60)
        await monitor.sample()  # consumer lag: group, topic and partition labels
        return (generate_latest(monitor.registry()).decode(),
                json.dumps(monitor.status(), indent=1, sort_keys=True, default=str))
    finally:
        await monitor.stop()


def test_the_run_settled_with_debug_logs_bad_encounters_and_phi_to_look_for(phi_run: PhiRun) -> None:
    """The other checks are not vacuous: every process logged at DEBUG, the error paths
    ran, and there is PHI to look for."""
    summary = phi_run.summary
    assert summary["settled"] is True
    assert summary["dead_lettered"] > 0 and summary["coding_review"] > 0
    assert summary["eligibility_held"] > 0 and summary["scrub_rejected"] > 0
    assert set(CHILD_LOGS) <= set(phi_run.logs), sorted(phi_run.logs)
    for source, least in MIN_DEBUG_LINES.items():
        assert phi_run.debug_lines[source] >= least, (source, phi_run.debug_lines)
    assert phi_run.encounters == summary["encounters"] - summary["dead_lettered"]
    checked = phi_run.phi.counts()
    assert checked["member id"] >= 600  # the panel (practice_for: 600 patients), and mistyped ids sent
    assert checked["patient name"] >= 100 and checked["last name"] >= 5
    assert checked["patient birth date"] >= 1000 and checked["subscriber birth date"] >= 100
    assert checked["clinical note"] >= 1


@pytest.mark.parametrize("source", [
    "parent",
    "worker.log",
    "payer.log",
    "console",
    "other log files",
])
def test_no_log_line_of_any_process_carries_phi(phi_run: PhiRun, source: str) -> None:
    if source == "other log files":  # a log file a future change adds is searched too
        sources = {name: lines for name, lines in phi_run.logs.items()
                   if name not in ("parent", "console", *CHILD_LOGS)}
    else:
        sources = {source: phi_run.logs[source]}
    phi_run.phi.assert_absent(sources)


def test_metrics_status_and_summary_carry_no_phi(phi_run: PhiRun) -> None:
    families = {f.name: f for f in text_string_to_metric_families(phi_run.metrics)}
    records = {s.labels["topic"]: s.value for s in families["claimflow_topic_records"].samples
               if s.name.endswith("_total")}
    assert records["encounters"] == phi_run.summary["encounters"]
    assert records["dead-letter"] == phi_run.summary["dead_lettered"] > 0
    assert families["claimflow_consumer_lag"].samples and families["claimflow_coding_findings"].samples
    phi_run.phi.assert_absent({
        "/metrics": phi_run.metrics.splitlines(),
        "/status": phi_run.status.splitlines(),
        "run summary": json.dumps(phi_run.summary, indent=1, sort_keys=True, default=str).splitlines(),
    })


def test_dead_letters_say_why_without_phi(phi_run: PhiRun) -> None:
    letters = phi_run.dead_letters
    assert len(letters) == phi_run.summary["dead_lettered"] > 0
    assert all(letter.reason for letter in letters)
    phi_run.phi.assert_absent({
        "dead-letter reason": [letter.reason for letter in letters],
        "dead-letter error_type": [letter.error_type for letter in letters],
        "dead-letter stage": [letter.stage for letter in letters],
        # The key is the source's (the encounter id); original_value keeps the event for replay, PHI and all.
        "dead-letter source_key": [(letter.source_key or b"").decode(errors="replace") for letter in letters],
    })


def corruptions(value: bytes) -> Iterator[bytes]:
    """Bad input made of a real event: cut at every length; each body byte replaced by
    0x00, 0x7f, 0x80 or 0xff (an Avro length, union index or UTF-8 byte gone wrong); a
    wrong magic byte, an unknown schema id, trailing bytes."""
    for end in range(len(value)):
        yield value[:end]
    for at in range(5, len(value)):
        for byte in (0x00, 0x7F, 0x80, 0xFF):
            if value[at] != byte:
                yield value[:at] + bytes([byte]) + value[at + 1:]
    yield b"\x01" + value[1:]
    yield value[:1] + (999_999).to_bytes(4, "big") + value[5:]
    yield value + b"\x02trailing"


def test_codec_and_stage_errors_on_corrupt_input_carry_no_phi(caplog: pytest.LogCaptureFixture) -> None:
    """No broker: the codec's exceptions on thousands of corruptions of real encounters
    (the patients of the run's seed), and the coding and claims stages fed corrupt
    events — their dead letters' reasons and every line they log at DEBUG."""
    settings = Settings()
    codec = default_codec(settings.schemas_dir)
    planned = plan_encounters(40, SEED, 0.0, 0.0, codec, PayerBook.load(settings.payer_profiles_file),
                              lapsed_rate=0.1, incomplete_rate=0.1)
    encounters = [codec.decode(record.value, Encounter) for record in planned]
    phi = PhiSet()
    for enc in encounters:
        phi.add_encounter(enc)
    # Dependents first: their events carry a second person (the subscriber) as well.
    chosen = sorted(encounters, key=lambda e: e.subscriber is None)[:8]

    errors: list[str] = []
    kinds: Counter[str] = Counter()
    for enc in chosen:
        for value in corruptions(codec.encode(enc)):
            try:
                codec.decode(value, Encounter)
            except Exception as exc:  # anything the codec raises goes into a dead letter's reason
                errors.append(f"{type(exc).__name__}: {exc}")
                kinds[type(exc).__name__] += 1
    assert len(errors) > 2000, kinds

    caplog.set_level(logging.DEBUG)
    context = WorkerContext.load(settings, codec, {table: {} for table in TABLES})

    def messages(topic: str, key: str, values: Iterator[bytes], first: int = 0) -> list[SourceMessage]:
        return [SourceMessage(topic, 0, first + n, key.encode(), value) for n, value in enumerate(values)]

    coding = STAGE["coding"]
    letters = []
    coded = []
    for enc in chosen[:3]:
        letters += coding.run(context, codec, messages("encounters", enc.encounter_id,
                                                       corruptions(codec.encode(enc)))).dead_letters
        clean = coding.run(context, codec, messages("encounters", enc.encounter_id, iter([codec.encode(enc)])))
        coded += [(enc.encounter_id, codec.encode(e.event)) for e in clean.emits if e.topic == Topic.CODED]
    assert coded, "no clean encounter was coded: nothing to corrupt for the claims stage"
    for encounter_id, value in coded:
        letters += STAGE["claims"].run(context, codec, messages("coded", encounter_id, corruptions(value))).dead_letters
    assert len(letters) > 1000
    assert any("dead-lettered" in record.getMessage() for record in caplog.records)

    phi.assert_absent({
        "codec exceptions": errors,
        "stage dead-letter reasons": [letter.reason for letter in letters],
        "stage logs": caplog.text.splitlines(),
    })
