"""``du``: what each tier holds, from the catalog: keys, versions, objects, bytes, room left."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import typer

from memories_geo.cli.output import JsonOption, console, human_size, print_json, table
from memories_geo.cli.state import state
from memories_geo.config import redact_url

if TYPE_CHECKING:
    from memories_geo.monitor.usage import TierUsage

__all__ = ["du", "register", "usage"]


def usage(tiers: Mapping[str, TierUsage], urls: Mapping[str, str]) -> dict[str, Any]:
    """Keys, versions, objects, bytes and room left per tier, and their total.

    Examples
    --------
    >>> from memories_geo.monitor.usage import TierUsage
    >>> tiers = {"hot": TierUsage("hot", 1, 1, 10, objects=2, max_size=40)}
    >>> usage(tiers, {})["tiers"][0]["available_bytes"]
    30
    """
    rows = [
        {
            "tier": name, "url": urls.get(name), "keys": u.keys, "versions": u.versions,
            "objects": u.objects, "bytes": u.used_bytes, "available_bytes": u.available_bytes,
            "utilization_percentage": u.utilization_percentage, "max_size": u.max_size,
        }
        for name, u in tiers.items()
    ]
    total = {
        "keys": sum(u.keys for u in tiers.values()), "versions": sum(u.versions for u in tiers.values()),
        "bytes": sum(u.used_bytes for u in tiers.values()), "objects": sum(u.objects for u in tiers.values()),
    }
    return {"tiers": rows, "total": total}


def du(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show what each tier holds: keys, versions, objects, bytes and the room left.

    Versions count older and checkpointed ones; objects are files; the room left is
    the quota (``max_size``) left, capped by a local disk's free space. Read from the
    catalog; nothing is listed on the storage itself. ``--json`` adds each tier's URL
    (credentials removed).
    """
    mem = state(ctx).memory()
    urls = {n: redact_url(mem.tiers.tier_config(n).url) for n in mem.tiers.names}
    report = usage(mem.monitor.get_storage_usage(), urls)
    if json:
        print_json(report)
        return
    out = table(
        None,
        ["tier", "keys", "versions", "objects", "size", "bytes", "available", "used"],
        right=["keys", "versions", "objects", "size", "bytes", "available", "used"],
    )
    for row in report["tiers"]:
        percent = row["utilization_percentage"]
        available = row["available_bytes"]
        out.add_row(
            row["tier"], str(row["keys"]), str(row["versions"]), str(row["objects"]),
            human_size(row["bytes"]), f"{row['bytes']:,}",
            "-" if available is None else human_size(available),
            "-" if percent is None else f"{percent:.1f} %",
        )
    total = report["total"]
    out.add_section()
    out.add_row(
        "total", str(total["keys"]), str(total["versions"]), str(total["objects"]),
        human_size(total["bytes"]), f"{total['bytes']:,}", "", "",
    )
    console().print(out)


def register(app: typer.Typer) -> None:
    """Add ``du`` to ``app``.

    Examples
    --------
    >>> register(typer.Typer())
    """
    app.command(epilog="Example: memories-geo du --json")(du)
