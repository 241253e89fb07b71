"""``recover``: remove orphans of interrupted writes, rebuild a lost catalog, restore a good checkpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from memories_geo.cli.output import YesOption, confirm, console
from memories_geo.cli.state import state

__all__ = ["recover", "register"]


def recover(
    ctx: typer.Context,
    rebuild_catalog: Annotated[
        bool,
        typer.Option(
            "--rebuild-catalog",
            metavar="",
            help="Rebuild the catalog from the version records and "
            "checkpoint manifests (the old catalog is kept aside), e.g. after a disk loss.",
        ),
    ] = False,
    latest: Annotated[
        bool,
        typer.Option(
            "--latest",
            metavar="",
            help="Restore the newest checkpoint that verifies, e.g. after a bad batch.",
        ),
    ] = False,
    backup: Annotated[
        str | None,
        typer.Option(
            "--backup",
            metavar="DIR|URL",
            help="Backup store to read checkpoints from, e.g. `--backup s3://backups/geo`.",
            show_default=False,
        ),
    ] = None,
    yes: YesOption = False,
) -> None:
    """Remove the orphans of interrupted writes; optionally rebuild the catalog or restore. Asks first."""
    from memories_geo.checkpoints import RecoveryManager

    steps = ["remove the files of interrupted writes"]
    if rebuild_catalog:
        steps.insert(0, "rebuild the catalog (the current one is moved aside)")
    if latest:
        steps.insert(-1, "restore the newest checkpoint that verifies")
    confirm(f"Recover: {'; '.join(steps)}?", yes=yes)
    out = console()
    recovery = RecoveryManager(state(ctx).config(), backup_storage=backup)
    if rebuild_catalog:
        report = recovery.rebuild_catalog(force=True)
        out.print(
            f"catalog rebuilt: {report['versions']} version(s), {report['keys']} key(s), "
            f"{report['checkpoints']} checkpoint(s)"
            + (f"; old catalog kept as {report['moved_aside']}" if report["moved_aside"] else ""),
            markup=False,
        )
        for problem in report["unverifiable"]:
            out.print(f"  skipped: {problem}", markup=False)
    if latest:
        cp = recovery.recover_latest()
        out.print(f"restored checkpoint {cp.name} ({cp.id})", markup=False)
    removed = recovery.clean_orphans()
    for url in removed:
        out.print(f"removed orphan {url}", markup=False)
    out.print(f"{len(removed)} orphan(s) removed", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``recover`` to ``app``.

    Examples
    --------
    >>> register(typer.Typer())
    """
    app.command(epilog="Example: memories-geo recover --rebuild-catalog --backup /mnt/backup --yes")(recover)
