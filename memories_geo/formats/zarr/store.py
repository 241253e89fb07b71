"""Zarr stores for a location, and the one call to ``to_zarr`` every write goes through."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray as xr

    from memories_geo.backends.base import Location

__all__ = ["open_group", "write_zarr", "zarr_store"]


def zarr_store(location: Location, *, read_only: bool = False) -> Any:
    """A plain path for local directories (zarr's ``LocalStore``), else an ``FsspecStore``."""
    if location.is_local:
        return location.full_path
    from zarr.storage import FsspecStore

    return FsspecStore.from_url(
        location.fs.unstrip_protocol(location.full_path),
        storage_options=dict(location.storage_options),
        read_only=read_only,
    )


def open_group(location: Location) -> Any:
    """The Zarr group stored at ``location``, read-only."""
    import zarr

    return zarr.open_group(zarr_store(location, read_only=True), mode="r")


def write_zarr(
    obj: xr.Dataset | xr.DataTree,
    location: Location,
    *,
    mode: str,
    compute: bool,
    encoding: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Write ``obj`` as a Zarr v3 group at ``location`` with xarray's ``to_zarr``.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataTree
        Prepared data (attributes and encodings already made storable).
    location : Location
        The version's location.
    mode : {"w-", "a", "r+"}
        ``"w-"`` for a new group, ``"a"`` to append (``append_dim=`` in ``kwargs``),
        ``"r+"`` for a region write (``region=`` in ``kwargs``). Metadata is
        consolidated except in region writes, which keep the stored shapes.
    compute : bool
        ``False`` returns the chunk writes as a ``dask.delayed`` object.
    encoding : mapping, optional
        Per-variable (per-node for a tree) encoding.
    extra : mapping, optional
        The caller's own ``to_zarr`` keywords.
    **kwargs
        ``append_dim=``, ``region=`` and the like.

    Returns
    -------
    dask.delayed.Delayed or None
        What ``to_zarr`` returns with ``compute=False``.
    """
    arguments: dict[str, Any] = {**(extra or {}), **kwargs}
    if encoding is not None:
        arguments["encoding"] = encoding
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", module="zarr")
        return obj.to_zarr(
            zarr_store(location),
            mode=mode,
            zarr_format=3,
            consolidated=mode != "r+",
            compute=compute,
            **arguments,
        )
