"""The claim stage's two agents (coded encounters, 271 answers) in one worker share its
dedupe entries, and a batch's writes land only once its outputs are acknowledged. A batch
of one agent waiting for its acks while the other's batch runs must not leave an
encounter parked for good or billed twice: the stages take turns (``stages.lanes``).

The runners here are the worker's own (``BatchRunner`` over ``STAGES``) with dict tables
and a send whose acks the test holds back: the interleaving is forced, not hoped for."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from engine.claims.build import claim_id_for
from engine.claims.stage import TakenOn
from engine.model.events import CodedEncounter, EligibilityRequest
from engine.runtime.delivery import Headers, OutputLimits
from engine.runtime.faust_app import BatchRunner
from engine.runtime.staged_state import StagedTable
from engine.runtime.stages import SOURCE_HEADER, SourceMessage, lanes
from engine.wire.topics import Table
from engine.worker.stages import STAGES, TABLES
from tests.unit.claims.test_build import answer_to

BOUND_S = 10.0  # every wait below is for an event that comes at once; the bound only stops a hang


class WatchedLane(asyncio.Lock):
    """A lock that says when a second batch waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.contended = asyncio.Event()

    async def acquire(self) -> bool:
        if self.locked():
            self.contended.set()
        return await super().acquire()


@dataclasses.dataclass
class Broker:
    """Records every send; the acks of the records ``hold`` picks wait for ``release``."""

    hold: Callable[[str, bytes], bool] = lambda topic, key: False
    held: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    held_again: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)  # a held ack of a second batch
    release: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    sent: list[tuple[str, bytes, bytes, Headers]] = dataclasses.field(default_factory=list)
    batch_two: bool = False  # set once the second batch of ``interleave`` is started

    async def send(self, topic: str, key: bytes, value: bytes, headers: Headers) -> Awaitable[object]:
        self.sent.append((topic, key, value, headers))
        ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.hold(topic, key):
            (self.held_again if self.held.is_set() and self.batch_two else self.held).set()
            self.release_later(ack)
        else:
            ack.set_result(None)
        return ack

    def release_later(self, ack: asyncio.Future[object]) -> None:
        async def wait() -> None:
            await self.release.wait()
            ack.set_result(None)
        asyncio.get_running_loop().create_task(wait())


@pytest.fixture
def visits(coded) -> list[CodedEncounter]:
    recent = dataclasses.replace(coded, date_of_service=datetime.now(UTC).date() - timedelta(days=2))
    return [recent, dataclasses.replace(recent, encounter_id=f"{recent.encounter_id}-B")]


@pytest.fixture
def worker(worker_context, codec, settings):
    """The claim stages' runners with their production lanes, over dict tables, and the
    broker they send to."""
    tables: dict[Table, dict[str, str]] = {table: {} for table in TABLES}
    ctx = worker_context(tables={table: StagedTable(t) for table, t in tables.items()})
    broker = Broker()
    lane = lanes(STAGES, WatchedLane)
    limits = OutputLimits.of(settings)
    runners = {stage.name: BatchRunner(stage.name, lambda m, s=stage: s.run(ctx, codec, m), broker.send, codec,
                                       limits, settings.topic, lane[stage.name])
               for stage in STAGES}
    return runners, broker, tables[Table.CLAIMS_BY_ENCOUNTER], lane


def coded_record(codec, visit: CodedEncounter, offset: int, origin: str) -> SourceMessage:
    return SourceMessage("claims.coded", 2, offset, visit.encounter_id.encode(), codec.encode(visit),
                         ((SOURCE_HEADER, origin.encode()),))


def answer_record(codec, broker: Broker, visit: CodedEncounter, offset: int) -> SourceMessage:
    """The payer's 271 to the 270 sent for ``visit``."""
    requests = [value for topic, key, value, _ in broker.sent
                if topic.endswith("eligibility-requests") and key == visit.encounter_id.encode()]
    assert requests, f"no 270 for {visit.encounter_id}"
    request = codec.decode(requests[-1], EligibilityRequest)
    return SourceMessage("claims.eligibility-responses", 2, offset, visit.encounter_id.encode(),
                         codec.encode(answer_to(request, datetime.now(UTC))))


async def interleave(first: Awaitable[None], second: Callable[[], Awaitable[None]], broker: Broker,
                     lane: WatchedLane) -> None:
    """``first`` runs until one of its acks is held; ``second`` then runs as far as it can
    (to its end, to an ack of its own held, or until it waits for the lane); then the acks
    come and both finish."""
    one = asyncio.ensure_future(first)
    await asyncio.wait_for(broker.held.wait(), BOUND_S)
    broker.batch_two = True
    two = asyncio.ensure_future(second())
    stops = {asyncio.ensure_future(lane.contended.wait()), asyncio.ensure_future(broker.held_again.wait())}
    await asyncio.wait({two, *stops}, timeout=BOUND_S, return_when=asyncio.FIRST_COMPLETED)
    for stop in stops:
        stop.cancel()
    assert two.done() or lane.contended.is_set() or broker.held_again.is_set(), \
        "the second batch neither ran nor waited for the lane"
    broker.release.set()
    await asyncio.wait_for(asyncio.gather(one, two), BOUND_S)


def claim_sources(broker: Broker, claim_key: bytes | None = None) -> set[bytes]:
    return {dict(headers)[SOURCE_HEADER] for topic, key, _, headers in broker.sent
            if topic.endswith("claims-submitted") and (claim_key is None or key == claim_key)}


async def test_a_resend_read_while_its_claim_is_being_sent_does_not_bill_it_again(worker, codec, visits) -> None:
    """The 271's batch bills the parked encounter and waits for its acks; a resend of the
    encounter read meanwhile saw it parked, and its own batch lands last. Its write must
    not put the entry back to parked, or the payer's second 271 (a redelivered 270
    answered again) bills the encounter a second time."""
    runners, broker, billed, lane = worker
    visit = visits[0]
    await runners["claims"].run([coded_record(codec, visit, 40, "claims.encounters:0:7:0")])
    broker.hold = lambda topic, key: topic.endswith(("claims-submitted", "duplicates"))

    await interleave(runners["eligibility"].run([answer_record(codec, broker, visit, 1)]),
                     lambda: runners["claims"].run([coded_record(codec, visit, 41, "claims.encounters:0:9:0")]),
                     broker, lane["claims"])
    await runners["eligibility"].run([answer_record(codec, broker, visit, 2)])

    assert len(claim_sources(broker)) == 1, claim_sources(broker)
    assert not TakenOn.loads(billed[visit.encounter_id]).parked


async def test_an_answer_read_before_its_encounter_s_parking_landed_still_bills_it(worker, codec, visits) -> None:
    """A coded batch of two: the first encounter's 270 is acknowledged and answered while
    the batch still waits for the second's ack, so its parking has not landed yet. The
    271 read then must not find nothing and be dropped, leaving the encounter parked for good."""
    runners, broker, billed, lane = worker
    first, second = visits
    broker.hold = lambda topic, key: topic.endswith("eligibility-requests") and key == second.encounter_id.encode()

    async def answer_the_first() -> None:
        await runners["eligibility"].run([answer_record(codec, broker, first, 1)])

    await interleave(runners["claims"].run([coded_record(codec, first, 40, "claims.encounters:0:7:0"),
                                            coded_record(codec, second, 41, "claims.encounters:0:8:0")]),
                     answer_the_first, broker, lane["claims"])

    assert not TakenOn.loads(billed[first.encounter_id]).parked, "the first encounter is parked for good"
    assert len(claim_sources(broker, claim_id_for(first.encounter_id).encode())) == 1


def test_stages_sharing_a_table_share_a_lane_and_others_do_not() -> None:
    lane = lanes(STAGES)
    assert lane["claims"] is lane["eligibility"]
    assert lane["coding"] is lane["recoding"]
    assert lane["posting"] is lane["denial-actions"]
    assert len({id(lock) for lock in lane.values()}) == 3
