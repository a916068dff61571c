"""``claims simulate …``: the EHR, payer and coder simulators, standalone."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import replace
from typing import Annotated, Protocol

import typer

from engine.cli.context import bootstrap as _bootstrap
from engine.cli.context import console
from engine.cli.context import load_settings as _settings
from engine.settings import Settings

simulate_app = typer.Typer(help="The EHR and payer simulators, standalone.", no_args_is_help=True)


@simulate_app.command("ehr")
def simulate_ehr(
    encounters: Annotated[int, typer.Option(help="How many encounters to send.")] = 1000,
    rate: Annotated[float, typer.Option(help="Encounters per second; 0 = flat out.")] = 50.0,
    seed: Annotated[int, typer.Option()] = 1,
    bad_rate: Annotated[float | None, typer.Option()] = None,
    resend_rate: Annotated[float | None, typer.Option()] = None,
    lapsed_rate: Annotated[float | None, typer.Option()] = None,
    incomplete_rate: Annotated[float | None, typer.Option()] = None,
) -> None:
    """Send encounters from the EHR simulator to the encounters topic (and write the
    master data the payer simulator answers eligibility from)."""
    from engine.wire.codec import default_codec
    from simulators.coverage import write_master_data
    from simulators.ehr import plan_encounters, practice_for, send_planned
    from simulators.payer.adjudication import PayerBook

    settings = _settings()
    bootstrap = _bootstrap(settings)
    codec = default_codec(settings.schemas_dir)
    book = PayerBook.load(settings.payer_profiles_file)
    practice = practice_for(seed, book)
    write_master_data(practice.records(), settings.master_data_dir, practice.authorizations)
    planned = plan_encounters(
        encounters, seed, settings.bad_rate if bad_rate is None else bad_rate,
        settings.resend_rate if resend_rate is None else resend_rate, codec, book,
        lapsed_rate=settings.lapsed_rate if lapsed_rate is None else lapsed_rate,
        incomplete_rate=settings.incomplete_rate if incomplete_rate is None else incomplete_rate, practice=practice,
    )
    sent = asyncio.run(send_planned(settings, bootstrap, planned, rate or None))
    console.print(f"sent {sent} records ({encounters} encounters plus resends)")


@simulate_app.command("master-data")
def simulate_master_data(seed: Annotated[int, typer.Option()] = 1) -> None:
    """Write the simulated patients and coverage for a seed (what the payer simulator knows)."""
    from simulators.coverage import write_master_data
    from simulators.ehr import practice_for
    from simulators.payer.adjudication import PayerBook

    settings = _settings()
    practice = practice_for(seed, PayerBook.load(settings.payer_profiles_file))
    write_master_data(practice.records(), settings.master_data_dir, practice.authorizations)
    console.print(f"{len(practice.members)} patients and their coverage in {settings.master_data_dir}")


@simulate_app.command("payer")
def simulate_payer(seed: Annotated[int | None, typer.Option(help="Default: CLAIMS_SEED.")] = None) -> None:
    """Run the payer simulator (a faust app): eligibility answers, adjudication with
    accumulators, remittances paid out after each payer's latency; until Ctrl-C."""
    from simulators.payer.app import run_payer

    settings = _settings()
    settings = replace(settings, seed=seed if seed is not None else settings.seed)
    run_payer(settings, _bootstrap(settings))


@simulate_app.command("coder")
def simulate_coder() -> None:
    """Run the coder simulator: new coding work items → fixes, queries, audit outcomes, until Ctrl-C."""
    from engine.wire.codec import default_codec
    from simulators.coder import CoderSimulator

    settings = _settings()
    bootstrap = _bootstrap(settings)
    _serve_until_signal(CoderSimulator(settings, bootstrap, default_codec(settings.schemas_dir)),
                        settings.with_bootstrap(bootstrap), "the coder simulator")


class _Simulator(Protocol):
    stop: asyncio.Event

    async def run(self) -> None: ...


def _serve_until_signal(simulator: _Simulator, settings: Settings, what: str) -> None:
    """Run a simulator until SIGINT/SIGTERM sets its stop event, watching its broker for a
    reset (``engine/runtime/cluster_watch.py``) meanwhile."""
    from engine.runtime.cluster_watch import watch_cluster

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, simulator.stop.set)
        watcher = asyncio.create_task(watch_cluster(settings, what, simulator.stop))
        try:
            await simulator.run()
        finally:
            simulator.stop.set()
            await watcher

    asyncio.run(serve())
