"""faust's aiokafka transport with a consumer that hands a fetch over as one unit.

faust 0.15.3 (pinned in pyproject.toml) hands each fetched record to its streams in
``Consumer._drain_messages`` through ``wait_first(callback(message), suspend_flow.wait())``:
four tasks and an ``asyncio.wait`` per record, so that a rebalance can cut a record's
hand-over short. ``ChunkConsumer`` runs the same per-record steps (gaps, the commit
cadence, the read offsets, the conductor's callback) for a whole fetch in one task, and
races that task once against the suspended flow. A rebalance cuts the fetch short where
faust cut it: at the record being handed over, whose read offset is set as faust sets it,
and none after it. The apps name it by the broker URL's scheme (``BROKER_SCHEME``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from faust.transport import drivers
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service

#: The scheme of the broker URL that selects this transport (``claimflow://host:port``).
BROKER_SCHEME = "claimflow"

#: Records handed over between two turns of the event loop, as faust's drain yields.
YIELD_EVERY = 100


class ChunkConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer whose drain hands each fetch to the streams in one task."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - the Fetcher's task; tests drive it
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.getmany(timeout=1.0)
                await self.sleep(0)  # as faust: a getmany that returns at once must not starve the loop
                if not self.should_stop:
                    await self.hand_over([pair async for pair in fetched])
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def hand_over(self, fetched: Sequence[tuple[TP, Any]]) -> None:
        """Hand ``fetched`` to the streams, racing the whole of it once against a suspended
        flow (a rebalance); the record cut short keeps the read offset faust gives it.

        The commit faust makes every ``commit_every`` acknowledgements comes first, outside
        the race: a rebalance must not cancel a commit halfway."""
        if not fetched:
            return
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()
        in_flight: list[tuple[TP, int]] = []
        await self.wait_first(self._hand_over_each(fetched, in_flight), self.suspend_flow.wait())
        if in_flight:  # cut short in the middle of a record's hand-over
            tp, offset = in_flight[0]
            self._read_offset[tp] = offset

    async def _hand_over_each(self, fetched: Sequence[tuple[TP, Any]], in_flight: list[tuple[TP, int]]) -> None:
        """faust's per-record steps of ``_drain_messages``, for every record of a fetch."""
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        for tp, message in fetched:
            since_yield += 1
            if since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            offset = message.offset
            r_offset = read_offset.get(tp)
            if r_offset is not None and offset < r_offset:
                continue  # read already (fetched again from an older position): faust drops it too
            gap = offset - (r_offset or 0)
            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                await self._add_gap(tp, r_offset + 1, offset)
            in_flight.append((tp, offset))
            await callback(message)
            in_flight.clear()
            read_offset[tp] = offset


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with ``ChunkConsumer``."""

    Consumer = ChunkConsumer


def register() -> None:
    """Make ``BROKER_SCHEME://`` URLs select this transport (idempotent)."""
    drivers.TRANSPORTS.aliases[BROKER_SCHEME] = f"{__name__}:Transport"
