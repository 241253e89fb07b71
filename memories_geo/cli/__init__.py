"""The ``memories-geo`` command line (Typer): keys, checkpoints, recovery, configuration, usage.

Exit status: 0 on success, 1 when the operation failed (missing key, unreachable
storage, checksum mismatch...), 2 for a usage error (unknown option, bad value, a
destructive command without ``--yes`` and no terminal to ask at). Expected failures print
one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from memories_geo.cli import audit, checkpoint, config, du, keys, migrate, quickstart, recover, stats
from memories_geo.cli.failures import Failure, describe
from memories_geo.cli.state import State, state

__all__ = ["app", "main"]

PROG = "memories-geo"

app = typer.Typer(
    name=PROG,
    help="Store, find, version and checkpoint geospatial data (memories_geo).",
    epilog="Example: memories-geo --config memories.toml ls 'era5/*' --json",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version(PROG)
    except PackageNotFoundError:
        found = "unknown"
    typer.echo(f"{PROG} {found} (Python {sys.version.split()[0]})")
    raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config_path: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE|DIR",
            help="A memories.toml file, or a directory holding an embedded collection, e.g. "
            "`--config ./memories.toml`. Default: $MEMORIES_GEO_CONFIG, ./memories.toml, "
            "else the embedded collection in $MEMORIES_GEO_HOME or ./.memories.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            metavar="",
            help="More log lines on stderr: `-v` one per operation, `-vv` every backend call.",
            show_default=False,
        ),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, metavar="", help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Store, find, version and checkpoint geospatial data (memories_geo)."""
    state(ctx).config_path = config_path
    if verbose:
        from memories_geo.options import set_options

        ctx.with_resource(set_options(log_level="DEBUG" if verbose >= 2 else "INFO"))


keys.register(app)
du.register(app)
quickstart.register(app)
recover.register(app)
audit.register(app)
migrate.register(app)
stats.register(app)
app.add_typer(checkpoint.app)
app.add_typer(config.app)


def _report(failure: Failure) -> None:
    color = sys.stderr.isatty()
    typer.echo(
        typer.style(f"{PROG}: error: ", fg="red", bold=True) + failure.message
        if color
        else f"{PROG}: error: {failure.message}",
        err=True,
    )
    for line in failure.details:
        typer.echo(f"  {line}", err=True)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    typer.echo(str(code), err=True)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``memories-geo`` with ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    Expected failures are printed as one line on stderr (status 1, or 2 for usage errors);
    anything else is a bug and raises.

    Examples
    --------
    >>> main(["--version"])  # doctest: +ELLIPSIS
    memories-geo ...
    0
    """
    run = State()
    command = typer.main.get_command(app)
    try:
        command.main(args=None if argv is None else list(argv), prog_name=PROG, standalone_mode=True, obj=run)
    except SystemExit as exc:
        return _exit_status(exc.code)
    except Exception as exc:
        failure = describe(exc, run.loaded)
        if failure is None:
            raise
        _report(failure)
        return failure.code
    return 0
