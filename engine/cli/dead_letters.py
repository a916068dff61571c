"""``claims dlq …``: the dead-letter topic worked from the terminal (``engine.ops.dead_letters``).
list and show print ids, stages, reasons, sizes and digests, never the original's content
(it may carry PHI); ``show --out`` writes the original's bytes to a file for a fix."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from engine.cli.context import console, context, err
from engine.ops.dead_letters import Letter, ReplayError, by_stage_and_reason, matching, original_of, read_letters
from engine.ops.dead_letters import replay as replay_letters
from engine.settings import Settings

dlq_app = typer.Typer(help="The dead-letter topic: list, show, replay.", no_args_is_help=True)

Stage = Annotated[str | None, typer.Option(help="Only this stage's letters (coding, claims, eligibility, …).")]
Reason = Annotated[str | None, typer.Option(help="Only letters whose error type or reason contains this.")]


def _letters(stage: str | None, reason: str | None, ids: list[str] | None = None
             ) -> tuple[Settings, list[Letter]]:
    settings, bootstrap, codec = context()
    settings = dataclasses.replace(settings, bootstrap_servers=bootstrap)
    letters, unreadable = asyncio.run(read_letters(settings, codec))
    if unreadable:
        err.print(f"{unreadable} record(s) on the dead-letter topic are not dead letters", style="yellow")
    return settings, matching(letters, stage, reason, ids or ())


@dlq_app.command("list")
def list_letters(stage: Stage = None, reason: Reason = None,
                 each: Annotated[bool, typer.Option("--each", help="One row per letter, not per reason.")] = False
                 ) -> None:
    """Dead letters by stage and reason, most frequent first (or each with its id)."""
    _, letters = _letters(stage, reason)
    if each:
        table = Table(title=f"dead letters ({len(letters)})")
        for column in ("id", "failed (UTC)", "stage", "error", "source", "size"):
            table.add_column(column)
        for x in letters:
            lt = x.letter
            table.add_row(x.letter_id, lt.failed_at.strftime("%Y-%m-%d %H:%M:%S"), lt.stage, lt.error_type,
                          f"{lt.source_topic}[{lt.source_partition}]@{lt.source_offset}", str(lt.original_size))
    else:
        table = Table(title=f"dead letters ({len(letters)})")
        for column in ("stage", "error", "reason", "letters"):
            table.add_column(column, justify="right" if column == "letters" else "left")
        for stage_name, error, why, n in by_stage_and_reason(letters):
            table.add_row(stage_name, error, escape(why), str(n))
    console.print(table)


@dlq_app.command("show")
def show(letter_id: Annotated[str, typer.Argument(metavar="ID", help="partition:offset on the dead-letter topic "
                                                                     "(from `claims dlq list --each`).")],
         out: Annotated[Path | None, typer.Option(help="Write the whole original value here.")] = None) -> None:
    """One dead letter: why, where from, its size and digest. Exit 1 if there is none."""
    settings, letters = _letters(None, None, [letter_id])
    if not letters:
        err.print(f"no dead letter {letter_id}", style="red")
        raise typer.Exit(1)
    lt = letters[0].letter
    table = Table(title=f"dead letter {letter_id}", show_header=False)
    for name, value in (
        ("stage", lt.stage), ("error", lt.error_type), ("reason", lt.reason),
        ("source", f"{lt.source_topic}[{lt.source_partition}]@{lt.source_offset}"),
        ("source key", (lt.source_key or b"").decode(errors="replace")),
        ("failed (UTC)", lt.failed_at.isoformat()), ("original size", str(lt.original_size)),
        ("original sha256", lt.original_sha256), ("kept in the letter", "first bytes" if lt.original_truncated
                                                   else "whole"),
    ):
        table.add_row(name, escape(value))
    console.print(table)
    if out is not None:
        try:
            out.write_bytes(asyncio.run(original_of(settings, lt)))
        except ReplayError as exc:
            err.print(escape(str(exc)), style="red")
            raise typer.Exit(1) from None
        console.print(f"original written to {out}")


@dlq_app.command("replay")
def replay(stage: Stage = None, reason: Reason = None,
           letter_id: Annotated[list[str] | None, typer.Option("--id", help="Only these letters (repeatable).")] = None,
           dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed, send nothing.")] = False
           ) -> None:
    """Send the matching letters' originals back to their source topics, to be processed
    again after a fix (a record already processed is recognised by its id: nothing
    changes). Exit 1 if none match or one cannot be replayed."""
    settings, letters = _letters(stage, reason, letter_id)
    if not letters:
        err.print("no dead letter matches", style="red")
        raise typer.Exit(1)
    if dry_run:
        console.print(f"would replay {len(letters)} dead letter(s)")
        return
    try:
        sent = asyncio.run(replay_letters(settings, letters))
    except ReplayError as exc:
        err.print(escape(str(exc)), style="red")
        raise typer.Exit(1) from None
    console.print(f"replayed {sent} dead letter(s) to their source topics")



