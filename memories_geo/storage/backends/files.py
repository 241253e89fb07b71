"""Backend objects of file tiers: a local directory, a directory on a network mount."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memories_geo.config.mounts import mount_facts
from memories_geo.config.original import canonical_format
from memories_geo.errors import ConfigError
from memories_geo.storage.backends.base import BackendObject, format_settings, level_settings, resolved_path

__all__ = ["LocalFileStorage", "NetworkFileStorage"]


@dataclass(frozen=True, repr=False)
class LocalFileStorage(BackendObject):
    """A tier in a local directory.

    Parameters
    ----------
    root_path : str or path
        The directory (``base_path`` is the original's name for it).
    format : str, optional
        Default format of the kinds it stores (``"zarr"``, ``"cog"`` or the original
        ``"cloud-optimized-geotiff"``, ``"geoparquet"``...).
    compression : bool or str, optional
        A level (``"fast"`` ... ``"maximum"``); ``True`` keeps the tier's default,
        ``False`` means ``"fast"``.
    max_size : str or int, optional
        Quota of the tier (``"1TB"``).
    file_organization, permissions : str, optional
        Recorded only: memories_geo lays out ``{key}/@v/{version}`` itself (a key's
        slashes organise the tree) and files get the process's umask.

    Examples
    --------
    >>> LocalFileStorage("/data/hot").tier_settings()
    {'url': 'file:///data/hot'}
    """

    root_path: str | os.PathLike[str] | None = None
    base_path: str | os.PathLike[str] | None = None
    format: str | None = None
    compression: bool | str | None = None
    max_size: str | int | None = None
    file_organization: str | None = None
    permissions: str | None = None

    def __post_init__(self) -> None:
        if (self.root_path is None) == (self.base_path is None):
            raise ConfigError(f"{type(self).__name__} needs root_path (or the original base_path), once")
        if self.format is not None:
            canonical_format(self.format, f"{type(self).__name__}.format")

    @property
    def path(self) -> Path:
        """The directory, absolute."""
        return resolved_path(self.root_path if self.root_path is not None else self.base_path)  # type: ignore[arg-type]

    def tier_settings(self) -> dict[str, Any]:
        """``{"url": "file:///..."}`` plus format, compression and quota when given."""
        out: dict[str, Any] = {"url": self.path.as_uri()}
        out.update(format_settings(self.format, f"{type(self).__name__}.format"))
        out.update(level_settings(self.compression))
        if self.max_size is not None:
            out["max_size"] = self.max_size
        return out


@dataclass(frozen=True, repr=False)
class NetworkFileStorage(BackendObject):
    """A tier in a directory on a mounted network file system, its mount facts recorded.

    Parameters
    ----------
    mount_path : str or path
        The mounted directory (``mount_point`` in the original), or a directory below it.
    protocol, server, remote_path : str, optional
        The original's description of the export: when given, the mount must match
        (file system type starting with ``protocol``, source ``server:remote_path``),
        else :class:`ConfigError` says how to mount it.
    connection_options : mapping, optional
        Mount options the original lists (``rsize``...); recorded (the mount's own
        options are in :attr:`mount`).
    format, compression, max_size
        As for :class:`LocalFileStorage`.

    Examples
    --------
    >>> NetworkFileStorage("/").mount["mount_point"]
    '/'
    """

    mount_path: str | os.PathLike[str] | None = None
    mount_point: str | os.PathLike[str] | None = None
    protocol: str | None = None
    server: str | None = None
    remote_path: str | None = None
    connection_options: Mapping[str, Any] = field(default_factory=dict)
    format: str | None = None
    compression: bool | str | None = None
    max_size: str | int | None = None

    def __post_init__(self) -> None:
        if (self.mount_path is None) == (self.mount_point is None):
            raise ConfigError("NetworkFileStorage needs mount_path (or the original mount_point), once")
        facts = self.mount
        if self.protocol is not None and not facts["fstype"].startswith(str(self.protocol)):
            self._refuse(facts)
        if self.server is not None or self.remote_path is not None:
            expected = f"{self.server or ''}:{(self.remote_path or '').rstrip('/')}"
            if facts["source"].rstrip("/") != expected:
                self._refuse(facts)
        if self.format is not None:
            canonical_format(self.format, "NetworkFileStorage.format")

    def _refuse(self, facts: Mapping[str, str]) -> None:
        export = f"{self.server or 'SERVER'}:{self.remote_path or '/EXPORT'}"
        raise ConfigError(
            f"{str(self.path)!r} is on {facts['source']!r} ({facts['fstype']}, mounted at "
            f"{facts['mount_point']!r}), not the {self.protocol or 'network'} export {export}: mount it "
            f"first, e.g. 'sudo mount -t {self.protocol or 'nfs'} {export} {self.path}'"
        )

    @property
    def path(self) -> Path:
        """The directory, absolute."""
        return resolved_path(self.mount_path if self.mount_path is not None else self.mount_point)  # type: ignore[arg-type]

    @property
    def mount(self) -> dict[str, str]:
        """``mount_point``, ``fstype``, ``source`` and ``options`` of the mount the directory is on."""
        return mount_facts(self.path)

    def tier_settings(self) -> dict[str, Any]:
        """``{"url": "file:///...", "mount": "/..."}`` plus format, compression and quota."""
        out: dict[str, Any] = {"url": self.path.as_uri(), "mount": str(self.path)}
        out.update(format_settings(self.format, "NetworkFileStorage.format"))
        out.update(level_settings(self.compression))
        if self.max_size is not None:
            out["max_size"] = self.max_size
        return out
