"""engine.ops.chaos: the kill spec, and kills carried out on real child processes, each
taken out of the run's table while it is down and restarted under its name."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from engine.ops.chaos import ChaosReport, ChaosSpecError, Kill, parse_chaos, run_chaos


def test_a_spec_names_targets_signals_and_counts() -> None:
    assert parse_chaos("worker:term:2, payer:kill") == [
        Kill("worker", signal.SIGTERM), Kill("worker", signal.SIGTERM), Kill("payer", signal.SIGKILL)]
    assert parse_chaos("") == []
    for bad in ("broker:kill", "worker:stop", "worker", "worker:kill:x"):
        with pytest.raises(ChaosSpecError):
            parse_chaos(bad)


def _child() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


async def test_each_kill_stops_its_child_and_restarts_it_under_the_same_name() -> None:
    processes = {"engine worker 1": _child(), "engine worker 2": _child(), "payer simulator": _child()}
    first = dict(processes)
    report = ChaosReport()
    try:
        await run_chaos(parse_chaos("worker:kill:2,payer:term"), processes, lambda name: _child(), seed=3,
                        report=report, gap_s=(0.0, 0.0))
        assert report.finished and report.figures()["kills"] == 3
        assert set(processes) == set(first)
        for kill in report.done:
            assert first[kill["name"]].poll() is not None  # the child it first found is gone
            assert kill["exit_code"] == (-signal.SIGKILL if kill["signal"] == "SIGKILL" else -signal.SIGTERM)
        assert processes["payer simulator"] is not first["payer simulator"]
        assert all(p.poll() is None for p in processes.values())  # all restarted and running
    finally:
        for p in [*processes.values(), *first.values()]:
            if p.poll() is None:
                p.kill()
            p.wait()
