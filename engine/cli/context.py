"""What every ``claims`` subcommand starts from: settings (with logging set up), the
broker to talk to, the codec, and who is acting. Shared by ``engine.cli.app`` and the
work-queue CLIs (``coding``, ``denials``)."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os

import typer
from rich.console import Console

from engine.runtime.broker import BrokerError, resolve_bootstrap
from engine.runtime.kafka import ClusterRefused, check_connection
from engine.settings import Settings
from engine.wire.codec import Codec, default_codec

console = Console()
err = Console(stderr=True)


def load_settings() -> Settings:
    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return settings


def bootstrap(settings: Settings) -> str:
    """The broker address, or exit 2 saying how to get one (or that it refused us)."""
    try:
        address = resolve_bootstrap(settings)
        asyncio.run(check_connection(settings.with_bootstrap(address)))
        return address
    except (BrokerError, ClusterRefused) as exc:
        err.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def context() -> tuple[Settings, str, Codec]:
    settings = load_settings()
    return settings, bootstrap(settings), default_codec(settings.schemas_dir)


def user_id(given: str | None) -> str:
    """Who acts: the option given, else CLAIMS_USER, else the login name (an id, no PHI)."""
    return given or os.environ.get("CLAIMS_USER") or getpass.getuser()


def positions(values: list[str], option: str) -> dict[int, str]:
    """``N=VALUE`` options (a diagnosis or line position and its new value), by position."""
    parsed: dict[int, str] = {}
    for value in values:
        position, sep, rest = value.partition("=")
        if not sep or not position.strip().isdigit():
            raise typer.BadParameter(f"{option} takes POSITION=VALUE, e.g. {option} 1=M54.50 (got {value!r})")
        parsed[int(position)] = rest.strip()
    return parsed


def int_list(text: str, option: str) -> tuple[int, ...]:
    """``1,2,3`` as numbers (dx pointers, an order)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"{option} takes numbers separated by commas, got {text!r}") from None
