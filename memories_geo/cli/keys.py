"""Commands on keys: ``ls``, ``info``, ``versions``, ``search``, ``delete``, ``verify``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from memories_geo.cli.output import (
    JsonOption,
    YesOption,
    confirm,
    console,
    entry_summary,
    human_date,
    human_size,
    plain,
    print_json,
    print_table,
    table,
)
from memories_geo.cli.state import state
from memories_geo.types import Kind

if TYPE_CHECKING:
    from memories_geo.entry import Entry
    from memories_geo.memory import Memory

__all__ = ["check_tier", "delete", "info", "ls", "register", "search", "verify", "versions"]

KeyArgument = Annotated[
    str, typer.Argument(metavar="KEY", help="The key, e.g. `era5/t2m`.", show_default=False)
]
TierOption = Annotated[
    str | None,
    typer.Option("--tier", metavar="TIER", help="Only this tier, e.g. `--tier hot`.", show_default=False),
]


def check_tier(mem: Memory, tier: str | None, option: str = "--tier") -> None:
    """Refuse a tier the configuration does not have, naming the ones it has (exit status 2).

    Examples
    --------
    >>> check_tier(mg.Memory("/tmp/mg-doc"), "hot")  # doctest: +SKIP
    """
    if tier is not None and tier not in mem.tiers.names:
        raise typer.BadParameter(
            f"unknown tier {tier!r}; tiers: {', '.join(mem.tiers.names)}", param_hint=f"'{option}'"
        )


def _bbox(bbox: Any) -> str:
    return "-" if bbox is None else "(" + ", ".join(f"{v:.4g}" for v in bbox) + ")"


def _time_range(entry: Entry) -> str:
    if not entry.time_start and not entry.time_end:
        return "-"
    ends = [human_date(entry.time_start), human_date(entry.time_end)]
    if all(end.endswith(" 00:00") for end in ends):
        ends = [end.removesuffix(" 00:00") for end in ends]
    return " .. ".join(ends)


def ls(
    ctx: typer.Context,
    pattern: Annotated[
        str | None,
        typer.Argument(
            metavar="PATTERN",
            help="Glob on keys, e.g. `'era5/*'` (quote it for the shell).",
            show_default=False,
        ),
    ] = None,
    tier: TierOption = None,
    json: JsonOption = False,
) -> None:
    """List the current entries: key, version, tier, format, kind, size and creation time."""
    mem = state(ctx).memory()
    check_tier(mem, tier)
    entries = mem.catalog.search(key=pattern, tier=tier)
    if json:
        print_json([entry_summary(e) for e in entries])
        return
    out = table(None, ["key", "version", "tier", "format", "kind", "size", "created (UTC)"], right=["size"])
    for e in entries:
        out.add_row(
            e.key,
            f"v{e.version}",
            e.tier,
            e.format,
            e.kind,
            human_size(e.size_bytes),
            human_date(e.created_at),
        )
    print_table(out, empty="(no entries)")


def info(
    ctx: typer.Context,
    key: KeyArgument,
    version: Annotated[
        int | None,
        typer.Option(
            "--version",
            metavar="N",
            help="A version number, e.g. `--version 2`; default the current.",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Show everything the catalog knows about a key's current (or a given) version."""
    entry = state(ctx).memory().info(key, version=version)
    if json:
        print_json(plain(entry.to_dict()))
        return
    accessed = f"{entry.access_count} time(s), last {human_date(entry.last_accessed_at, relative=True)}"
    rows = [
        ("key", entry.key),
        ("version", f"v{entry.version} ({entry.version_id})"),
        ("tier / format / kind", f"{entry.tier} / {entry.format} / {entry.kind}"),
        ("size", f"{human_size(entry.size_bytes)} ({entry.size_bytes:,} bytes)"),
        ("CRS", entry.crs if not entry.crs or len(entry.crs) <= 60 else f"{entry.crs[:57]}..."),
        ("bbox (EPSG:4326)", _bbox(entry.bbox)),
        ("time", _time_range(entry)),
        ("shape", ", ".join(f"{k}: {v}" for k, v in entry.shape.items()) or "-"),
        ("variables", ", ".join(entry.variables) or "-"),
        ("tags", ", ".join(entry.tags) or "-"),
        ("attrs", ", ".join(f"{k}={v!r}" for k, v in entry.attrs.items()) or "-"),
        ("created", human_date(entry.created_at, relative=True)),
        ("accessed", accessed if entry.access_count else "never"),
        ("checksum", entry.checksum),
        ("uri", entry.uri),
    ]
    out = console()
    out.print(f"{entry.key} v{entry.version}", markup=False)
    for name, value in rows:
        out.print(f"{name:<22} {value}", markup=False, overflow="ignore", crop=False)


def versions(ctx: typer.Context, key: KeyArgument, json: JsonOption = False) -> None:
    """List every version of a key, oldest first; `*` marks the current one."""
    mem = state(ctx).memory()
    current = mem.info(key)
    found = mem.versions(key)
    if json:
        print_json([{**entry_summary(e), "current": e.version_id == current.version_id} for e in found])
        return
    out = table(None, ["", "version", "created (UTC)", "tier", "format", "size", "checksum"], right=["size"])
    for e in found:
        out.add_row(
            "*" if e.version_id == current.version_id else "",
            f"v{e.version}",
            human_date(e.created_at),
            e.tier,
            e.format,
            human_size(e.size_bytes),
            e.checksum,
        )
    print_table(out)


def _parse_time(value: str | None) -> Any:
    if not value:
        return None
    from memories_geo.query import normalize_time

    start, slash, end = value.partition("/")
    spec: Any = (start or None, end or None) if slash else start
    try:
        return normalize_time(spec)
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="'--time'") from exc


def search(
    ctx: typer.Context,
    bbox: Annotated[
        tuple[float, float, float, float] | None,
        typer.Option(
            "--bbox",
            metavar="MINX MINY MAXX MAXY",
            help="MINX MINY MAXX MAXY in EPSG:4326, e.g. `--bbox -10 35 5 45`.",
            show_default=False,
        ),
    ] = None,
    time: Annotated[
        str | None,
        typer.Option(
            "--time",
            metavar="START/END",
            help="One period or START/END, e.g. `--time 2024-01/2024-06`.",
            show_default=False,
        ),
    ] = None,
    tier: Annotated[
        list[str] | None,
        typer.Option(
            "--tier",
            metavar="TIER",
            help="Only this tier (repeatable), e.g. `--tier hot`.",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[
        list[Kind] | None,
        typer.Option(
            "--kind",
            metavar="raster|vector|timeseries",
            help="Only this kind (repeatable), e.g. `--kind vector`.",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", metavar="GLOB", help="Glob on keys, e.g. `--key 'era5/*'`.", show_default=False
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            metavar="TAG",
            help="Entries carrying this tag (repeatable), e.g. `--tag qc`.",
            show_default=False,
        ),
    ] = None,
    all_versions: Annotated[
        bool,
        typer.Option(
            "--all-versions", metavar="", help="Include versions that are not current, e.g. `--all-versions`."
        ),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Find stored objects across all tiers by footprint, time, tier, kind, key and tags."""
    from memories_geo.query import normalize_bbox

    mem = state(ctx).memory()
    for name in tier or []:
        check_tier(mem, name)
    try:
        box = normalize_bbox(bbox)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--bbox'") from exc
    entries = mem.catalog.search(
        bbox=box,
        time=_parse_time(time),
        tier=tier or None,
        kind=[k.value for k in kind] if kind else None,
        key=key,
        tags=tag or None,
        all_versions=all_versions,
    )
    if json:
        print_json([entry_summary(e) for e in entries])
        return
    out = table(
        None, ["key", "version", "tier", "kind", "format", "time", "bbox (EPSG:4326)", "size"], right=["size"]
    )
    for e in entries:
        out.add_row(
            e.key,
            f"v{e.version}",
            e.tier,
            e.kind,
            e.format,
            _time_range(e),
            _bbox(e.bbox),
            human_size(e.size_bytes),
        )
    print_table(out, empty="(no match)")


def delete(
    ctx: typer.Context,
    key: KeyArgument,
    version: Annotated[
        int | None,
        typer.Option(
            "--version",
            metavar="N",
            help="Delete only this (non-current) version, e.g. `--version 1`.",
            show_default=False,
        ),
    ] = None,
    yes: YesOption = False,
) -> None:
    """Delete a key with all its versions, or one version; asks first.

    Versions a checkpoint pins are kept (retired) until no checkpoint needs them.
    """
    mem = state(ctx).memory()
    if version is not None:
        entry = mem.info(key, version=version)
        question = f"Delete version v{entry.version} of {key!r} ({human_size(entry.size_bytes)})?"
    else:
        mem.info(key)
        found = mem.versions(key)
        total = human_size(sum(e.size_bytes for e in found))
        question = f"Delete {key!r} and its {len(found)} version(s) ({total})?"
    confirm(question, yes=yes)
    for e in mem.delete(key, version=version):
        console().print(f"deleted {e.key} v{e.version}", markup=False)


def verify(
    ctx: typer.Context,
    key: Annotated[
        str | None,
        typer.Argument(
            metavar="KEY", help="Only this key, e.g. `era5/t2m`; default every key.", show_default=False
        ),
    ] = None,
    all_versions: Annotated[
        bool,
        typer.Option("--all-versions", metavar="", help="Check every version, not only the current ones."),
    ] = False,
) -> None:
    """Re-hash stored data and compare it with the checksums recorded when it was saved."""
    entries = state(ctx).memory().verify(key, all_versions=all_versions)
    size = human_size(sum(e.size_bytes for e in entries))
    console().print(f"verified {len(entries)} version(s), {size}: all intact", markup=False)


def register(app: typer.Typer) -> None:
    """Add the key commands to ``app``.

    Examples
    --------
    >>> register(typer.Typer())
    """
    app.command(epilog="Example: memories-geo ls 'era5/*' --tier hot --json")(ls)
    app.command(epilog="Example: memories-geo info era5/t2m --version 2")(info)
    app.command(epilog="Example: memories-geo versions era5/t2m --json")(versions)
    app.command(
        epilog="Example: memories-geo search --bbox -10 35 5 45 --time 2024-01/2024-06 --kind raster"
    )(search)
    app.command(epilog="Example: memories-geo delete scratch/test --yes")(delete)
    app.command(epilog="Example: memories-geo verify era5/t2m --all-versions")(verify)
