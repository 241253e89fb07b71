"""Module-level functions acting on the default :class:`Memory`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from memories_geo.entry import Entry
from memories_geo.memory import Memory

__all__ = [
    "default", "delete", "info", "ls", "open", "recover", "save", "search", "set_default",
    "verify", "versions",
]

_lock = threading.Lock()
_default: Memory | None = None


def default() -> Memory:
    """The default collection, created on first use from the discovered configuration."""
    global _default
    with _lock:
        if _default is None:
            _default = Memory()
        return _default


def set_default(memory: Memory | None) -> None:
    """Make ``memory`` the default collection (``None`` re-discovers on next use)."""
    global _default
    with _lock:
        _default = memory


def save(obj: Any, key: str | None = None, **kwargs: Any) -> Entry:
    """Store ``obj``; see :meth:`Memory.save`.

    Examples
    --------
    >>> import memories_geo as mg
    >>> entry = mg.save(ds, "era5/t2m", tier="hot")  # doctest: +SKIP
    """
    return default().save(obj, key, **kwargs)


def open(key: str, **kwargs: Any) -> Any:
    """Open a stored object; see :meth:`Memory.open`.

    Examples
    --------
    >>> ds = mg.open("era5/t2m")  # doctest: +SKIP
    """
    return default().open(key, **kwargs)


def search(**kwargs: Any) -> Any:
    """Find stored objects; see :meth:`Memory.search`.

    Examples
    --------
    >>> mg.search(bbox=(-10, 35, 5, 45), time=("2024-01", "2024-06"))  # doctest: +SKIP
    """
    return default().search(**kwargs)


def ls(pattern: str | None = None, **kwargs: Any) -> Any:
    """Table of stored keys; see :meth:`Memory.ls`."""
    return default().ls(pattern, **kwargs)


def info(key: str, **kwargs: Any) -> Entry:
    """Catalog entry of a key; see :meth:`Memory.info`."""
    return default().info(key, **kwargs)


def versions(key: str) -> list[Entry]:
    """Versions of a key; see :meth:`Memory.versions`."""
    return default().versions(key)


def delete(key: str, **kwargs: Any) -> list[Entry]:
    """Delete a key or one version; see :meth:`Memory.delete`."""
    return default().delete(key, **kwargs)


def verify(key: str | None = None, **kwargs: Any) -> list[Entry]:
    """Check stored bytes against manifests; see :meth:`Memory.verify`."""
    return default().verify(key, **kwargs)


def recover() -> Sequence[str]:
    """Remove orphaned writes; see :meth:`Memory.recover`."""
    return default().recover()
