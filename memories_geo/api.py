"""Module-level functions acting on the default :class:`Memory`, with the same signatures."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from memories_geo.memory import Memory

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

    from memories_geo.entry import Entry, EntryList
    from memories_geo.types import CompressionLevel, Mode

__all__ = [
    "audit", "default", "delete", "info", "ls", "open", "recover", "request_restore", "restore_status",
    "save", "search", "set_default", "verify", "versions",
]

_lock = threading.Lock()
_default: Memory | None = None


def default() -> Memory:
    """The default collection, created on first use from the discovered configuration.

    Examples
    --------
    >>> mem = mg.default()  # doctest: +SKIP
    """
    global _default
    with _lock:
        if _default is None:
            _default = Memory()
        return _default


def set_default(memory: Memory | None) -> None:
    """Make ``memory`` the default collection (``None`` re-discovers on next use).

    Examples
    --------
    >>> mg.set_default(mg.Memory("/data/memories"))  # doctest: +SKIP
    """
    global _default
    with _lock:
        _default = memory


def save(
    obj: Any,
    key: str | None = None,
    *,
    tier: str | None = None,
    format: str | None = None,
    mode: Mode | None = None,
    crs: Any = None,
    encoding: Mapping[str, Any] | None = None,
    append_dim: str | None = None,
    compression: str | CompressionLevel | None = None,
    attrs: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    compute: bool = True,
    **format_options: Any,
) -> Any:
    """Store ``obj`` in the default collection; see :meth:`Memory.save` for every option.

    Returns
    -------
    Entry or dask.delayed.Delayed
        The new version's entry (a delayed save with ``compute=False``).

    Examples
    --------
    >>> import memories_geo as mg
    >>> entry = mg.save(ds, "era5/t2m", tier="hot")  # doctest: +SKIP
    """
    return default().save(
        obj, key, tier=tier, format=format, mode=mode, crs=crs, encoding=encoding,
        append_dim=append_dim, compression=compression, attrs=attrs, tags=tags, compute=compute,
        **format_options,
    )


def open(
    key: str,
    *,
    version: int | None = None,
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    time: Any = None,
    columns: Sequence[str] | str | None = None,
    verify: bool = False,
    **format_options: Any,
) -> Any:
    """Open a stored object; see :meth:`Memory.open` and the open contract (``docs/open.md``).

    Returns
    -------
    xarray.Dataset, DataArray, DataTree, geopandas.GeoDataFrame or GeoSeries
        The type that was saved, lazily where the format allows.

    Examples
    --------
    >>> ds = mg.open("era5/t2m", bbox=(-10, 35, 5, 45), time="2024-03")  # doctest: +SKIP
    """
    return default().open(
        key, version=version, bbox=bbox, bbox_crs=bbox_crs, time=time, columns=columns, verify=verify,
        **format_options,
    )


def search(
    *,
    bbox: Sequence[float] | None = None,
    time: Any = None,
    tier: str | Sequence[str] | None = None,
    kind: str | Sequence[str] | None = None,
    key: str | None = None,
    tags: Sequence[str] | None = None,
    bbox_crs: Any = None,
    all_versions: bool = False,
) -> gpd.GeoDataFrame:
    """Find stored objects across all tiers; see :meth:`Memory.search`.

    Examples
    --------
    >>> mg.search(bbox=(-10, 35, 5, 45), time=("2024-01", "2024-06"))  # doctest: +SKIP
    """
    return default().search(
        bbox=bbox, time=time, tier=tier, kind=kind, key=key, tags=tags, bbox_crs=bbox_crs,
        all_versions=all_versions,
    )


def ls(pattern: str | None = None, *, tier: str | None = None) -> pd.DataFrame:
    """Table of stored keys; see :meth:`Memory.ls`.

    Examples
    --------
    >>> mg.ls("era5/*")  # doctest: +SKIP
    """
    return default().ls(pattern, tier=tier)


def info(key: str, *, version: int | None = None) -> Entry:
    """Catalog entry of a key; see :meth:`Memory.info`.

    Examples
    --------
    >>> mg.info("era5/t2m").bbox  # doctest: +SKIP
    """
    return default().info(key, version=version)


def versions(key: str) -> EntryList:
    """Versions of a key, oldest first; see :meth:`Memory.versions`.

    Examples
    --------
    >>> [e.version for e in mg.versions("era5/t2m")]  # doctest: +SKIP
    """
    return default().versions(key)


def delete(key: str, *, version: int | None = None) -> list[Entry]:
    """Delete a key or one version; see :meth:`Memory.delete`.

    Examples
    --------
    >>> mg.delete("era5/t2m", version=1)  # doctest: +SKIP
    """
    return default().delete(key, version=version)


def verify(key: str | None = None, *, all_versions: bool = False) -> list[Entry]:
    """Check stored bytes against their checksums; see :meth:`Memory.verify`.

    Examples
    --------
    >>> mg.verify()  # doctest: +SKIP
    """
    return default().verify(key, all_versions=all_versions)


def recover() -> list[str]:
    """Remove orphaned writes; see :meth:`Memory.recover`.

    Examples
    --------
    >>> mg.recover()  # doctest: +SKIP
    """
    return default().recover()


def audit(
    key: str | None = None,
    *,
    operation: str | None = None,
    outcome: str | None = None,
    user: str | None = None,
    since: Any = None,
    until: Any = None,
) -> pd.DataFrame:
    """The audit log of the default collection; see :meth:`Memory.audit`.

    Examples
    --------
    >>> mg.audit(operation="delete", since="2026-11")  # doctest: +SKIP
    """
    return default().audit(key, operation=operation, outcome=outcome, user=user, since=since, until=until)


def request_restore(key: str, *, days: int = 7, tier: str | None = None, version: int | None = None) -> Any:
    """Restore an archived version for ``days``; see :meth:`Memory.request_restore`.

    Examples
    --------
    >>> mg.request_restore("archive/2019", days=7)  # doctest: +SKIP
    """
    return default().request_restore(key, days=days, tier=tier, version=version)


def restore_status(key: str, *, version: int | None = None) -> Any:
    """Archive state of a version; see :meth:`Memory.restore_status`.

    Examples
    --------
    >>> mg.restore_status("archive/2019").state  # doctest: +SKIP
    """
    return default().restore_status(key, version=version)
