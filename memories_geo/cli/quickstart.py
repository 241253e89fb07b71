"""``quickstart``: save the sample raster and vector, open and search them, show the catalog."""

from __future__ import annotations

import typer

from memories_geo.cli.output import console, human_date, human_size, print_table, table
from memories_geo.cli.state import state

__all__ = ["quickstart", "register"]


def quickstart(ctx: typer.Context) -> None:
    """Save a sample raster and vector, open and search them, and print the catalog."""
    from memories_geo.examples import sample_raster, sample_vector

    out = console()
    mem = state(ctx).memory()
    out.print(f"collection: {mem.catalog.path.parent}", markup=False)
    for obj, key, tier in (
        (sample_raster(), "examples/t2m-2024", "hot"),
        (sample_vector(), "examples/countries", "warm"),
    ):
        entry = mem.save(obj, key, tier=tier, mode="w")
        out.print(
            f"saved {entry.key} v{entry.version}: {entry.kind} as {entry.format} on {entry.tier}, "
            f"{human_size(entry.size_bytes)}",
            markup=False,
        )
    ds = mem.open("examples/t2m-2024")
    out.print(
        f"opened examples/t2m-2024 lazily: {dict(ds.sizes)}, mean t2m "
        f"{float(ds.t2m.mean()):.2f} {ds.t2m.attrs['units']}",
        markup=False,
    )
    hits = mem.search(bbox=(-10, 35, 5, 45), time=("2024-01", "2024-06"))
    out.print(f"search(bbox=(-10, 35, 5, 45), time=('2024-01', '2024-06')) -> {list(hits.key)}", markup=False)
    grid = table(
        "catalog", ["key", "version", "tier", "format", "kind", "size", "created (UTC)"], right=["size"]
    )
    for e in mem.catalog.current_entries():
        grid.add_row(
            e.key,
            f"v{e.version}",
            e.tier,
            e.format,
            e.kind,
            human_size(e.size_bytes),
            human_date(e.created_at),
        )
    print_table(grid, empty="(no entries)")
    out.print("next: memories-geo ls, memories-geo info examples/t2m-2024, memories-geo --help", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``quickstart`` to ``app``.

    Examples
    --------
    >>> register(typer.Typer())
    """
    app.command(epilog="Example: MEMORIES_GEO_HOME=/tmp/demo memories-geo quickstart")(quickstart)
