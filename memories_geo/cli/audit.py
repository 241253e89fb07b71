"""``audit``: who changed what, when, and with which outcome."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer

from memories_geo.cli.output import JsonOption, print_json, print_table, table
from memories_geo.cli.state import state

__all__ = ["audit", "register"]


def audit(
    ctx: typer.Context,
    key: Annotated[
        str | None,
        typer.Argument(metavar="KEY", help="Key or glob, e.g. `'era5/*'`.", show_default=False),
    ] = None,
    operation: Annotated[
        str | None,
        typer.Option("--operation", "-o", help="save, delete, delete_version, restore, checkpoint.save, "
                     "checkpoint.delete, recover, rebuild or migrate, e.g. `delete`.", show_default=False),
    ] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only failed operations.")] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Start of the time window (UTC), e.g. `2026-11-30`.",
                     show_default=False),
    ] = None,
    last: Annotated[
        int, typer.Option("--last", "-n", min=1, help="Show only the newest N records, e.g. `20`.")
    ] = 50,
    json: JsonOption = False,
) -> None:
    """Show the audit log: every save, deletion, restore, checkpoint and recovery, oldest first."""
    mem = state(ctx).memory()
    log = mem.audit(key, operation=operation, outcome="error" if errors else None, since=since)
    log = log.tail(last)
    if json:
        records = log.assign(at=log["at"].map(lambda t: t.isoformat())).astype(object)
        print_json(records.where(records.notna(), None).to_dict("records"))
        return
    out = table(None, ["seq", "at (UTC)", "user@host", "operation", "key", "version", "outcome", "detail"],
                right=["seq", "version"])
    for row in log.to_dict("records"):
        version = row["version"]
        out.add_row(
            str(row["seq"]), row["at"].strftime("%Y-%m-%d %H:%M:%S"), f"{row['user']}@{row['host']}",
            str(row["operation"]), str(row["key"] or ""), "" if pd.isna(version) else f"v{version}",
            str(row["outcome"]), str(row["detail"]),
        )
    print_table(out, empty="(no audit records)")


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command to ``app``.

    Examples
    --------
    >>> register(typer.Typer())
    """
    app.command(epilog="Example: memories-geo audit 'era5/*' --operation delete --since 2026-11-01")(audit)
