"""``migrate``: move keys between tiers (by lifecycle policy or by hand), preview, resume, follow."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from memories_geo.cli.output import JsonOption, console, human_date, print_json, print_table, table
from memories_geo.cli.state import state
from memories_geo.errors import OptionError

if TYPE_CHECKING:
    from memories_geo.lifecycle import MigrationPlan, MigrationStatus

__all__ = ["migrate", "register"]

#: Selection options of ``--from``/``--to`` and the job's criteria they set.
_CRITERIA = {"--key": "key", "--kind": "kinds", "--tag": "tags", "--idle": "last_accessed_before",
             "--age": "created_before", "--min-size": "min_size", "--max-size": "max_size"}


def _as_json(result: MigrationPlan | MigrationStatus) -> dict[str, Any]:
    """A plan or a status as plain JSON values."""
    from memories_geo.lifecycle import MigrationPlan

    out: dict[str, Any] = {"job": result.job.to_dict(), "keys": [asdict(k) for k in result.keys],
                           "total_bytes": result.total_bytes}
    if isinstance(result, MigrationPlan):
        return {**out, "dry_run": True, "resumed": result.resumed,
                "estimated_seconds": round(result.estimated_seconds, 3), "throughput": result.throughput}
    return {**out, "dry_run": False, "state": result.state, "progress_percentage": result.progress_percentage,
            "bytes_migrated": result.bytes_migrated, "keys_done": result.keys_done,
            "keys_failed": result.keys_failed, "started_at": result.started_at,
            "finished_at": result.finished_at, "seconds": result.seconds}


def _show(results: list[Any], *, json: bool, empty: str) -> None:
    if json:
        print_json([_as_json(r) for r in results])
        return
    out = console()
    if not results:
        out.print(empty, markup=False)
    for result in results:
        out.print(repr(result), markup=False)


def _list_jobs(mem: Any, *, json: bool) -> None:
    from memories_geo.lifecycle import migration_jobs

    jobs = migration_jobs(mem.version_store)
    if json:
        print_json([{"id": s.id, "state": s.state, "progress_percentage": s.progress_percentage,
                     "migration": s.job.describe(), "keys": len(s.keys), "created_at": s.created_at}
                    for s in jobs])
        return
    out = table(None, ["job", "state", "progress", "keys", "created (UTC)", "migration"],
                right=["progress", "keys"])
    for s in jobs:
        out.add_row(s.id, s.state, f"{s.progress_percentage:.0f}%", str(len(s.keys)),
                    human_date(s.created_at), s.job.describe())
    print_table(out, empty="(no migrations)")


def migrate(
    ctx: typer.Context,
    policy: Annotated[
        bool, typer.Option("--policy", metavar="", help="Apply the `[[lifecycle]]` policies of the "
                           "configuration once, e.g. `--policy --dry-run`.")
    ] = False,
    source: Annotated[
        str | None, typer.Option("--from", metavar="TIER", help="Tier the keys leave, e.g. `--from hot`.",
                                 show_default=False)
    ] = None,
    dest: Annotated[
        str | None, typer.Option("--to", metavar="TIER", help="Tier the keys go to, e.g. `--to warm`.",
                                 show_default=False)
    ] = None,
    key: Annotated[
        list[str] | None, typer.Option("--key", "-k", metavar="GLOB", help="Only keys matching this glob "
                                       "(repeatable), e.g. `--key 'sentinel2/*'`.", show_default=False)
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", metavar="KIND", help="Only this kind of data (repeatable): "
                                       "raster, vector, timeseries or array, e.g. `--kind raster`.",
                                       show_default=False)
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", metavar="TAG", help="Only keys with this tag (repeatable), "
                                       "e.g. `--tag qc`.", show_default=False)
    ] = None,
    idle: Annotated[
        str | None, typer.Option("--idle", metavar="PERIOD", help="Only keys not opened for this long, "
                                 "e.g. `--idle '30 days'`.", show_default=False)
    ] = None,
    age: Annotated[
        str | None, typer.Option("--age", metavar="PERIOD", help="Only versions saved at least this long "
                                 "ago, e.g. `--age '90 days'`.", show_default=False)
    ] = None,
    min_size: Annotated[
        str | None, typer.Option("--min-size", metavar="SIZE", help="Only keys at least this big, "
                                 "e.g. `--min-size 100MB`.", show_default=False)
    ] = None,
    max_size: Annotated[
        str | None, typer.Option("--max-size", metavar="SIZE", help="Only keys at most this big, "
                                 "e.g. `--max-size 2GiB`.", show_default=False)
    ] = None,
    format_: Annotated[
        str | None, typer.Option("--format", metavar="FORMAT", help="Convert to this format on the way, "
                                 "e.g. `--format geoparquet`.", show_default=False)
    ] = None,
    reencode: Annotated[
        bool, typer.Option("--reencode", metavar="", help="Rewrite keys with the destination tier's "
                           "compression instead of copying bytes, e.g. `--to glacier --reencode`.")
    ] = False,
    keep_source: Annotated[
        bool, typer.Option("--keep-source", metavar="", help="Copy, keeping the source version, "
                           "e.g. `--keep-source` to try a tier out.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", metavar="", help="Show the plan (keys, bytes, estimated time) "
                           "and change nothing, e.g. `--dry-run --json`.")
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Keys migrated at once, e.g. `--workers 8`.")
    ] = 4,
    status: Annotated[
        str | None, typer.Option("--status", metavar="JOB_ID", help="Show where a migration stands, "
                                 "e.g. `--status lifecycle-hot-warm-1cf99bd216-00001`.", show_default=False)
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", metavar="JOB_ID", help="Finish an interrupted or failed "
                                 "migration, e.g. `--resume 0f3c...`.", show_default=False)
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", metavar="", help="List the migrations in the journal, "
                           "e.g. `--list --json`.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Move keys between tiers: verified, resumable; by lifecycle policy, by hand, or resume one.

    One of: `--policy` (apply the configuration's `[[lifecycle]]` policies), `--from TIER
    --to TIER` with selection options, `--resume JOB_ID`, `--status JOB_ID` or `--list`.
    """
    from memories_geo.lifecycle import MigrationJob, execute_migration, migration_status
    from memories_geo.lifecycle.policies import apply_policies

    modes = [name for name, on in (("--policy", policy), ("--from/--to", source or dest),
                                   ("--status", status), ("--resume", resume), ("--list", list_)) if on]
    if len(modes) != 1:
        raise OptionError(
            "migrate takes one of --policy, --from TIER --to TIER, --resume JOB_ID, --status JOB_ID or "
            f"--list; got {', '.join(modes) or 'none'} "
            "(e.g. memories-geo migrate --from hot --to warm --idle '30 days')"
        )
    given = {name: value for name, value in (
        ("--key", key), ("--kind", kind), ("--tag", tag), ("--idle", idle), ("--age", age),
        ("--min-size", min_size), ("--max-size", max_size), ("--format", format_),
        ("--keep-source", keep_source), ("--reencode", reencode),
    ) if value}
    if modes[0] != "--from/--to" and given:
        raise OptionError(f"{', '.join(given)} apply to --from/--to only; {modes[0]} takes none of them")
    mem = state(ctx).memory()
    if list_:
        _list_jobs(mem, json=json)
    elif status is not None:
        _show([migration_status(mem.version_store, status)], json=json, empty="")
    elif policy:
        results = apply_policies(mem.version_store, dry_run=dry_run, max_workers=workers)
        scheduled = [p for p in mem.version_store.config.lifecycle if p.scheduled]
        empty = "nothing to migrate: no key meets the lifecycle policy"
        if len(scheduled) > 1:
            empty = f"nothing to migrate: no key meets any of the {len(scheduled)} lifecycle policies"
        elif not scheduled:
            empty = "no scheduled lifecycle policy in the configuration; add [[lifecycle]] to memories.toml"
        _show(results, json=json, empty=empty)
    else:
        job: MigrationJob | str
        if resume is not None:
            job = resume
        else:
            if not source or not dest:
                raise OptionError("--from and --to go together, e.g. --from hot --to warm")
            criteria = {_CRITERIA[k]: v for k, v in given.items() if k in _CRITERIA}
            job = MigrationJob(source_tier=source, destination_tier=dest, format=format_, reencode=reencode,
                               delete_after_migration=not keep_source, selection_criteria=criteria)
        _show([execute_migration(mem.version_store, job, dry_run=dry_run, max_workers=workers)], json=json,
              empty="")


def register(app: typer.Typer) -> None:
    """Add the ``migrate`` command to ``app``.

    Examples
    --------
    >>> register(typer.Typer())
    """
    app.command(epilog="Example: memories-geo migrate --from hot --to warm --idle '30 days' --min-size 100MB "
                "--dry-run")(migrate)
