"""``checkpoint`` commands: save, list, restore, verify, diff, delete."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from memories_geo.checkpoints.manager import check_name
from memories_geo.cli.output import (
    JsonOption,
    YesOption,
    confirm,
    console,
    human_date,
    human_size,
    print_json,
    print_table,
    table,
)
from memories_geo.cli.state import state
from memories_geo.errors import OptionError

if TYPE_CHECKING:
    from memories_geo.checkpoints import CheckpointInfo, CheckpointManager

__all__ = ["app", "delete", "diff", "list_", "restore", "save", "verify"]

app = typer.Typer(
    name="checkpoint",
    help="Named snapshots of which version every key points to: save, list, restore, verify, diff, delete.",
    no_args_is_help=True,
)

BackupOption = Annotated[
    str | None,
    typer.Option(
        "--backup",
        metavar="DIR|URL",
        help="Backup store (a directory or URL), e.g. `--backup /mnt/backup`.",
        show_default=False,
    ),
]
RefArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="Checkpoint name or id, or `latest`, e.g. `nightly`.")
]
FullOption = Annotated[
    bool, typer.Option("--full", metavar="", help="Re-hash every file, not only those that changed.")
]


def _manager(ctx: typer.Context, backup: str | None) -> CheckpointManager:
    from memories_geo.checkpoints import MemoryPersistence

    return MemoryPersistence(state(ctx).memory(), backup_storage=backup).checkpoints


def _describe(cp: CheckpointInfo) -> str:
    return f"{cp.name!r} ({cp.id}, {human_date(cp.timestamp)} UTC, {cp.keys} key(s), {human_size(cp.bytes)})"


@app.command(epilog="Example: memories-geo checkpoint save nightly --message 'before reprocessing'")
def save(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="NAME",
            help="A name, e.g. `nightly`; default `cp-<UTC time>`. "
            "`latest` and `current` are references, never names.",
            show_default=False,
        ),
    ] = None,
    message: Annotated[
        str, typer.Option("--message", "-m", metavar="TEXT", help="A note, e.g. `-m 'before reprocessing'`.")
    ] = "",
    backup: BackupOption = None,
) -> None:
    """Checkpoint the current version of every key (and copy it to a backup store if given)."""
    if name is not None:
        try:
            check_name(name)
        except OptionError as exc:
            raise typer.BadParameter(str(exc), param_hint="'NAME'") from exc
    cp = _manager(ctx, backup).save(name, message=message)
    console().print(
        f"saved checkpoint {cp.name} ({cp.id}): {cp.keys} key(s), {human_size(cp.bytes)}"
        + (", backed up" if cp.backed_up else ""),
        markup=False,
    )


@app.command("list", epilog="Example: memories-geo checkpoint list --json")
def list_(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the checkpoints, newest first."""
    checkpoints = state(ctx).memory().checkpoints.list()
    if json:
        print_json([asdict(cp) for cp in checkpoints])
        return
    out = table(
        None,
        ["name", "id", "created (UTC)", "kind", "keys", "size", "backup", "message"],
        right=["keys", "size"],
    )
    for cp in checkpoints:
        out.add_row(
            cp.name,
            cp.id,
            human_date(cp.timestamp),
            cp.kind,
            str(cp.keys),
            human_size(cp.bytes),
            "yes" if cp.backed_up else "no",
            cp.message,
        )
    print_table(out, empty="(no checkpoints)")


@app.command(epilog="Example: memories-geo checkpoint restore nightly --yes")
def restore(
    ctx: typer.Context,
    ref: RefArgument = "latest",
    no_validate: Annotated[
        bool, typer.Option("--no-validate", metavar="", help="Skip checking the pinned data first.")
    ] = False,
    full: FullOption = False,
    backup: BackupOption = None,
    yes: YesOption = False,
) -> None:
    """Point every key back to the version a checkpoint pinned; asks first.

    The state before the restore is kept as a `safety` checkpoint, so a restore can be undone.
    """
    manager = _manager(ctx, backup)
    cp = manager.get(ref)
    confirm(f"Restore checkpoint {_describe(cp)}?", yes=yes)
    done = manager.restore(cp.id, validate="full" if full else not no_validate)
    console().print(f"restored checkpoint {done.name} ({done.id})", markup=False)


@app.command(epilog="Example: memories-geo checkpoint verify nightly --full")
def verify(
    ctx: typer.Context, ref: RefArgument = "latest", full: FullOption = False, backup: BackupOption = None
) -> None:
    """Check every version a checkpoint pins against its checksums."""
    cp = _manager(ctx, backup).verify(ref, validate="full" if full else True)
    console().print(f"checkpoint {cp.name} ({cp.id}) verified: {cp.keys} key(s) intact", markup=False)


def _side(entries: dict[str, Any], version_id: str | None) -> dict[str, Any] | None:
    if version_id is None:
        return None
    entry = entries.get(version_id)
    return {
        "version": entry.version if entry else None,
        "version_id": version_id,
        "created_at": entry.created_at if entry else None,
    }


def _show(side: dict[str, Any] | None) -> str:
    if side is None:
        return "-"
    if side["version"] is None:
        return side["version_id"]
    return f"v{side['version']} ({human_date(side['created_at'])})"


@app.command(epilog="Example: memories-geo checkpoint diff nightly current --json")
def diff(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            metavar="FROM", help="One side: a checkpoint name or id, `latest` or `current`, e.g. `nightly`."
        ),
    ],
    other: Annotated[
        str, typer.Argument(metavar="TO", help="The other side, e.g. `current` (the live state).")
    ] = "current",
    json: JsonOption = False,
) -> None:
    """Keys added, removed and re-pointed going from one checkpoint (or state) to another."""
    mem = state(ctx).memory()
    found = mem.checkpoints.diff(ref, other)
    vids = [
        *found.added.values(),
        *found.removed.values(),
        *(v for pair in found.changed.values() for v in pair),
    ]
    entries = mem.catalog.entries_by_version_id(vids) if vids else {}
    rows: list[tuple[str, str, str | None, str | None]] = sorted(
        [(k, "added", None, v) for k, v in found.added.items()]
        + [(k, "removed", v, None) for k, v in found.removed.items()]
        + [(k, "changed", a, b) for k, (a, b) in found.changed.items()],
        key=lambda row: row[0],
    )
    if json:
        changes = [
            {"key": k, "change": c, "from": _side(entries, a), "to": _side(entries, b)} for k, c, a, b in rows
        ]
        print_json({"from": ref, "to": other, "changes": changes})
        return
    out = table(None, ["key", "change", ref, other])
    for key, change, a, b in rows:
        out.add_row(key, change, _show(_side(entries, a)), _show(_side(entries, b)))
    print_table(out, empty=f"(no difference between {ref} and {other})")


@app.command(epilog="Example: memories-geo checkpoint delete nightly --yes")
def delete(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="Checkpoint name or id (required), e.g. `nightly`.", show_default=False
        ),
    ],
    backup: BackupOption = None,
    yes: YesOption = False,
) -> None:
    """Delete a checkpoint; versions only it kept alive are deleted too. Asks first."""
    manager = _manager(ctx, backup)
    cp = manager.get(ref)
    confirm(f"Delete checkpoint {_describe(cp)}?", yes=yes)
    done = manager.delete(cp.id)
    console().print(f"deleted checkpoint {done.name} ({done.id})", markup=False)
