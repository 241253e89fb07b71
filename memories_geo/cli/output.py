"""How the command line shows things: rich tables, human sizes and dates, JSON, confirmations."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from memories_geo.display.units import human_size, parse_time

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from memories_geo.entry import Entry

__all__ = [
    "JsonOption",
    "YesOption",
    "confirm",
    "console",
    "entry_summary",
    "human_date",
    "human_size",
    "plain",
    "print_json",
    "print_table",
    "table",
]

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        metavar="",
        help="Print JSON (parseable, e.g. by `jq`) instead of a table.",
        show_default=False,
    ),
]
YesOption = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        metavar="",
        help="Do it without asking (needed when not at a terminal), e.g. `--yes`.",
        show_default=False,
    ),
]

#: Width of tables when stdout is not a terminal and $COLUMNS does not say.
PIPE_WIDTH = 160


def console(*, stderr: bool = False) -> Console:
    """A rich console on the current stdout (or stderr), wide enough for tables in a pipe.

    Examples
    --------
    >>> console().print("hello")
    hello
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty() and "COLUMNS" not in os.environ:
        width = PIPE_WIDTH
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def _ago(seconds: float) -> str:
    for size, unit in (
        (86400 * 365, "year"),
        (86400 * 30, "month"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
    ):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def human_date(stamp: str | None, *, relative: bool = False, now: datetime | None = None) -> str:
    """An ISO 8601 UTC time as ``YYYY-MM-DD HH:MM`` (UTC), optionally with how long ago.

    Examples
    --------
    >>> human_date("2026-11-30T07:44:07.562626")
    '2026-11-30 07:44'
    >>> now = datetime(2026, 11, 30, 9, 50, tzinfo=UTC)
    >>> human_date("2026-11-30T07:44:07", relative=True, now=now)
    '2026-11-30 07:44:07 UTC (2 hours ago)'
    """
    if not stamp:
        return "-"
    moment = parse_time(stamp)
    if moment is None:
        return stamp
    if not relative:
        return moment.strftime("%Y-%m-%d %H:%M")
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    return (
        f"{moment.strftime('%Y-%m-%d %H:%M:%S')} UTC ({_ago(seconds) if seconds >= 0 else 'in the future'})"
    )


def table(title: str | None, columns: Sequence[str], *, right: Iterable[str] = ()) -> Table:
    """A rich table with these column headers; those in ``right`` are right-aligned numbers.

    Examples
    --------
    >>> t = table("tiers", ["tier", "bytes"], right=["bytes"])
    >>> t.add_row("hot", "1.0 KiB")
    """
    from rich import box
    from rich.table import Table

    aligned = set(right)
    out = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, title_justify="left", pad_edge=False)
    for name in columns:
        out.add_column(name, justify="right" if name in aligned else "left", overflow="fold")
    return out


def print_table(out: Table, *, empty: str = "(nothing)") -> None:
    """Print a table, or ``empty`` when it has no rows.

    Examples
    --------
    >>> print_table(table(None, ["key"]), empty="(no entries)")
    (no entries)
    """
    if out.row_count == 0:
        console().print(empty, markup=False)
    else:
        console().print(out)


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (dates and other objects as strings).

    Examples
    --------
    >>> print_json({"keys": 2})
    {
      "keys": 2
    }
    """
    sys.stdout.write(json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n")


def entry_summary(entry: Entry) -> dict[str, Any]:
    """The fields of an entry that listings show, as plain JSON values.

    Examples
    --------
    >>> from memories_geo.entry import Entry
    >>> entry_summary(Entry("a", 1, "hot", "zarr", "raster", "file:///x"))["key"]
    'a'
    """
    fields = (
        "key",
        "version",
        "version_id",
        "tier",
        "format",
        "kind",
        "size_bytes",
        "created_at",
        "time_start",
        "time_end",
        "crs",
        "bbox",
        "tags",
        "checksum",
        "uri",
    )
    out = {name: getattr(entry, name) for name in fields}
    out["bbox"] = list(entry.bbox) if entry.bbox is not None else None
    out["tags"] = list(entry.tags)
    return out


def plain(value: Mapping[str, Any] | Sequence[Any] | Any) -> Any:
    """``value`` with tuples as lists and mappings as dicts, recursively (for JSON output).

    Examples
    --------
    >>> plain({"a": (1, 2)})
    {'a': [1, 2]}
    """
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def confirm(question: str, *, yes: bool) -> None:
    """Ask before a destructive action; refuse without a terminal unless ``--yes`` was given.

    Raises
    ------
    typer.Exit
        With status 2 when there is no terminal to ask at and no ``--yes`` (a usage
        error, explained on stderr), with status 1 when the answer is no.

    Examples
    --------
    >>> confirm("Delete key 'a'?", yes=True)
    """
    if yes:
        return
    if not sys.stdin.isatty():
        typer.echo(
            f"memories-geo: error: {question.rstrip('?')}: refusing, since there is no terminal to "
            "ask for confirmation at; pass --yes to do it anyway",
            err=True,
        )
        raise typer.Exit(2)
    if not typer.confirm(question, default=False):
        typer.echo("nothing done", err=True)
        raise typer.Exit(1)
