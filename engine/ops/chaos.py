"""Crashes on purpose (``claims run --chaos``, the crash tests, ``make soak``): a run's
children stopped with SIGTERM or killed with SIGKILL at random points, each restarted at
once, so the run shows what nothing-lost-nothing-twice holds to under restarts."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: The children a kill may name, and the prefix of their names in the run's process table.
TARGETS = {"worker": "engine worker", "payer": "payer simulator", "coder": "coder simulator"}
SIGNALS = {"term": signal.SIGTERM, "kill": signal.SIGKILL}
_SPEC = re.compile(r"^(?P<target>[a-z]+):(?P<signal>[a-z]+)(?::(?P<count>\d+))?$")
#: How long a child stopped with SIGTERM gets before it is killed after all.
TERM_GRACE_S = 30.0


class ChaosSpecError(ValueError):
    """A ``--chaos`` spec that does not parse."""


@dataclass(frozen=True)
class Kill:
    target: str  # a key of TARGETS
    signal: signal.Signals


def parse_chaos(spec: str) -> list[Kill]:
    """``worker:term:3,worker:kill:3,payer:kill`` → the kills it names (count 1 by default)."""
    kills: list[Kill] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = _SPEC.match(part)
        if match is None or match["target"] not in TARGETS or match["signal"] not in SIGNALS:
            raise ChaosSpecError(f"{part!r}: want target:signal[:count], target one of {sorted(TARGETS)}, "
                                 f"signal one of {sorted(SIGNALS)}")
        kills += [Kill(match["target"], SIGNALS[match["signal"]])] * int(match["count"] or 1)
    return kills


@dataclass
class ChaosReport:
    """What the chaos did: each kill (target, signal, the child's exit code, seconds to restart)."""

    done: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False

    def figures(self) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        for kill in self.done:
            key = f"{kill['target']}:{kill['signal']}"
            by_kind[key] = by_kind.get(key, 0) + 1
        return {"kills": len(self.done), "by_target_and_signal": dict(sorted(by_kind.items())), "each": self.done}


async def run_chaos(kills: list[Kill], processes: MutableMapping[str, subprocess.Popen[bytes]],
                    restart: Callable[[str], subprocess.Popen[bytes]], seed: int, report: ChaosReport,
                    gap_s: tuple[float, float] = (1.0, 3.0)) -> None:
    """Carry out ``kills`` in a seeded random order, a random gap apart: take the child out
    of ``processes`` (so the run's watch does not call its exit a failure), signal it, wait
    for it to exit, start it again under the same name (``restart``) and put it back."""
    rng = random.Random(seed)
    order = list(kills)
    rng.shuffle(order)
    for kill in order:
        await asyncio.sleep(rng.uniform(*gap_s))  # a random point in the run, not a wait for a race
        names = sorted(name for name in processes if name.startswith(TARGETS[kill.target]))
        if not names:
            raise ChaosSpecError(f"no {TARGETS[kill.target]} runs in this run")
        name = rng.choice(names)
        child = processes.pop(name)
        started = time.monotonic()
        child.send_signal(kill.signal)
        code = await asyncio.to_thread(_wait, child, TERM_GRACE_S)
        processes[name] = restart(name)
        report.done.append({"target": kill.target, "name": name, "signal": kill.signal.name, "exit_code": code,
                            "restart_s": round(time.monotonic() - started, 2)})
        log.info("chaos: %s %s (exit %s), restarted as pid %d", kill.signal.name, name, code, processes[name].pid)
    report.finished = True


def _wait(child: subprocess.Popen[bytes], timeout_s: float) -> int:
    try:
        return child.wait(timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()
