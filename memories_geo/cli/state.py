"""What every command shares: the ``--config`` given, and the collection opened from it on demand."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from memories_geo.config import CONFIG_ENV, HOME_ENV, StorageConfig, default_home

if TYPE_CHECKING:
    from memories_geo.memory import Memory

__all__ = ["State", "state"]


@dataclass
class State:
    """The collection a command works on, opened only when a command needs it.

    Examples
    --------
    >>> State("/tmp/mg-demo").source()
    "--config /tmp/mg-demo (embedded collection in '/tmp/mg-demo')"
    """

    config_path: str | None = None
    loaded: StorageConfig | None = field(default=None, repr=False)
    opened: Memory | None = field(default=None, repr=False)

    def config(self) -> StorageConfig:
        """The configuration: from ``--config``, else discovered like :class:`Memory` does."""
        if self.loaded is None:
            self.loaded = StorageConfig.from_any(self.config_path)
        return self.loaded

    def memory(self) -> Memory:
        """The collection, opened once."""
        if self.opened is None:
            from memories_geo.memory import Memory

            self.opened = Memory(self.config())
        return self.opened

    def source(self) -> str:
        """Where the configuration comes from, in words."""
        if self.config_path is not None:
            path = Path(self.config_path)
            if path.suffix == ".toml":
                return f"--config {self.config_path}"
            return f"--config {self.config_path} (embedded collection in {str(path.resolve())!r})"
        if os.environ.get(CONFIG_ENV):
            return f"${CONFIG_ENV} = {os.environ[CONFIG_ENV]}"
        if Path("memories.toml").is_file():
            return "./memories.toml"
        where = f"${HOME_ENV}" if os.environ.get(HOME_ENV) else "default home ./.memories"
        return f"embedded collection in {str(default_home())!r} ({where})"


def state(ctx: typer.Context) -> State:
    """The :class:`State` of the command line run that ``ctx`` belongs to.

    Examples
    --------
    >>> def ls(ctx: typer.Context) -> None:  # a command
    ...     mem = state(ctx).memory()
    """
    found = ctx.find_object(State)
    if found is None:
        found = ctx.ensure_object(State)
    return found
