"""``du``: what each tier holds, from the catalog: keys, versions and bytes."""

from __future__ import annotations

from typing import Any

import typer

from memories_geo.cli.output import JsonOption, console, human_size, print_json, table
from memories_geo.cli.state import state
from memories_geo.config import redact_url

__all__ = ["du", "register", "usage"]


def usage(entries: Any, tiers: list[str], urls: dict[str, str]) -> dict[str, Any]:
    """Keys, versions and bytes per tier (configured tiers first), and their total.

    Examples
    --------
    >>> from memories_geo.entry import Entry
    >>> usage([Entry("a", 1, "hot", "zarr", "raster", "", size_bytes=10)], ["hot"], {})["total"]
    {'keys': 1, 'versions': 1, 'bytes': 10}
    """
    names = list(dict.fromkeys([*tiers, *(e.tier for e in entries)]))
    rows = []
    for name in names:
        here = [e for e in entries if e.tier == name]
        rows.append(
            {
                "tier": name,
                "url": urls.get(name),
                "keys": len({e.key for e in here}),
                "versions": len(here),
                "bytes": sum(e.size_bytes for e in here),
            }
        )
    total = {
        "keys": len({e.key for e in entries}),
        "versions": len(entries),
        "bytes": sum(e.size_bytes for e in entries),
    }
    return {"tiers": rows, "total": total}


def du(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show what each tier holds: keys, stored versions (those checkpoints keep included) and bytes.

    Read from the catalog; nothing is listed on the storage itself.
    """
    mem = state(ctx).memory()
    names = list(mem.tiers.names)
    urls = {n: redact_url(mem.tiers.tier_config(n).url) for n in names}
    report = usage(mem.catalog.all_versions(include_retired=True), names, urls)
    if json:
        print_json(report)
        return
    out = table(
        None,
        ["tier", "keys", "versions", "size", "bytes", "url"],
        right=["keys", "versions", "size", "bytes"],
    )
    for row in report["tiers"]:
        out.add_row(
            row["tier"],
            str(row["keys"]),
            str(row["versions"]),
            human_size(row["bytes"]),
            f"{row['bytes']:,}",
            row["url"] or "(not configured)",
        )
    total = report["total"]
    out.add_section()
    out.add_row(
        "total",
        str(total["keys"]),
        str(total["versions"]),
        human_size(total["bytes"]),
        f"{total['bytes']:,}",
        "",
    )
    console().print(out)


def register(app: typer.Typer) -> None:
    """Add ``du`` to ``app``.

    Examples
    --------
    >>> register(typer.Typer())
    """
    app.command(epilog="Example: memories-geo du --json")(du)
