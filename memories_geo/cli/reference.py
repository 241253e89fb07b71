"""The command reference in Markdown, generated from the Typer app (``docs/cli.md`` embeds it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

__all__ = ["markdown"]


def _commands(command: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        if not getattr(sub, "hidden", False):
            yield from _commands(sub, (*path, name))


def _label(param: Any) -> str:
    if param.param_type_name == "argument":
        return f"`{param.metavar or param.name.upper()}`"
    names = ", ".join(sorted(param.opts, key=len))
    takes_value = not getattr(param, "is_flag", False) and not getattr(param, "count", False)
    return f"`{names} {param.metavar}`" if takes_value and param.metavar else f"`{names}`"


def _usage(prog: str, path: tuple[str, ...], command: Any) -> str:
    pieces = [prog, *path]
    if any(p.param_type_name == "option" for p in command.params):
        pieces.append("[OPTIONS]")
    for p in command.params:
        if p.param_type_name == "argument":
            name = p.metavar or p.name.upper()
            pieces.append(name if p.required else f"[{name}]")
    if hasattr(command, "commands"):
        pieces.append("COMMAND [ARGS]...")
    return " ".join(pieces)


def markdown(app: typer.Typer | None = None, *, prog: str = "memories-geo", level: int = 2) -> str:
    """Markdown reference of every command: usage, arguments and options, an example.

    Parameters
    ----------
    app : typer.Typer, optional
        The app; default the ``memories-geo`` one.
    prog : str
        Program name shown in the usage lines.
    level : int
        Heading level of each command's section.

    Examples
    --------
    >>> text = markdown()
    >>> "## `memories-geo checkpoint restore`" in text
    True
    """
    if app is None:
        from memories_geo.cli import app as default_app

        app = default_app
    root = typer.main.get_command(app)
    out: list[str] = []
    for path, command in _commands(root, ()):
        out.append(f"{'#' * level} `{' '.join((prog, *path))}`\n")
        out.append(f"{' '.join((command.help or '').split())}\n" if path else "")
        out.append(f"```text\n{_usage(prog, path, command)}\n```\n")
        params = [p for p in command.params if p.help]
        if params:
            out.append("\n".join(f"- {_label(p)}: {' '.join(p.help.split())}" for p in params) + "\n")
        subcommands = getattr(command, "commands", {})
        if subcommands:
            out.append("Commands:\n")
            out.append(
                "\n".join(f"- `{name}`: {sub.help.splitlines()[0]}" for name, sub in subcommands.items())
                + "\n"
            )
        if command.epilog:
            out.append(f"{command.epilog.replace('Example: ', 'Example: `', 1)}`\n")
    return "\n".join(part for part in out if part)
