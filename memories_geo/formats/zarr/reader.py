"""Open a stored version lazily, as the type that was saved, and apply the open request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.errors import OptionError
from memories_geo.formats.zarr.cf import DATAARRAY_VARIABLE, restore
from memories_geo.formats.zarr.checked import checked_store
from memories_geo.formats.zarr.select import select_dataset, select_tree, select_variables
from memories_geo.formats.zarr.shared import SHARES_FILES, SharedFilesStore
from memories_geo.formats.zarr.store import zarr_store

if TYPE_CHECKING:
    from memories_geo.backends.base import Location
    from memories_geo.query import OpenRequest

__all__ = ["open_version"]


def open_version(
    location: Location, object_info: Mapping[str, Any], request: OpenRequest, *, checked: bool = True,
    shared: Mapping[str, str] | None = None,
) -> Any:
    """Open the Zarr group at ``location`` (dask-backed) and restrict it to ``request``.

    Parameters
    ----------
    location : Location
        Where the version is stored.
    object_info : mapping
        What the write recorded (type, name, what to undo per node).
    request : OpenRequest
        ``bbox``, ``time`` and ``columns`` (data variables of a Dataset); option
        ``chunks`` (default ``{}``: the stored chunks, or shards).
    checked : bool
        Refuse to read a chunk the version's manifest lists and the store lacks
        (default). ``False`` for a version still being written, which has no manifest.
    shared : mapping, optional
        With ``checked=False``: the files the version shares with earlier versions
        (key -> owner folder), read from there.

    Returns
    -------
    xarray.Dataset, xarray.DataArray or xarray.DataTree
        The type that was saved.

    Raises
    ------
    OptionError
        ``columns=`` on a DataArray or DataTree; ``bbox=`` / ``time=`` on data without
        a spatial extent (x/y or latitude/longitude coordinates) / a datetime dimension.
    FormatError
        A column that is not stored, or a bbox or time range that selects nothing.
    ChecksumMismatchError
        When data is read (not on open): a chunk the version was written with is gone
        from the store (see :mod:`memories_geo.formats.zarr.checked`).
    """
    import xarray as xr

    chunks = request.options.get("chunks", {})
    kind = object_info.get("type", "Dataset")
    nodes = object_info.get("nodes", {})
    if request.columns is not None and kind != "Dataset":
        raise OptionError(
            f"columns= selects data variables of a Dataset; this is a {kind}"
            + ("; select nodes of the opened tree instead" if kind == "DataTree" else "")
        )
    if checked:
        store: Any = checked_store(location, shares=bool(object_info.get(SHARES_FILES)))
    else:
        store = zarr_store(location, read_only=True)
        if shared:
            store = SharedFilesStore(store, location, shared,
                                     open_store=lambda owner: zarr_store(owner, read_only=True))
    decode_times = _time_decoder(nodes)
    if kind == "DataTree":
        tree = xr.open_datatree(
            store, engine="zarr", chunks=chunks, consolidated=True, decode_times=decode_times
        )
        datasets = {
            node.path: restore(node.to_dataset(inherit=False), nodes.get(node.path, {}))
            for node in tree.subtree
        }
        restored = xr.DataTree.from_dict(datasets, name=object_info.get("name"))
        if request.bbox is None and request.time is None:
            return restored
        return select_tree(restored, request)
    ds = xr.open_zarr(store, chunks=chunks, consolidated=True, decode_times=decode_times)
    for key in object_info.get("geo_attrs", []):
        ds.attrs.pop(key, None)
    ds = restore(ds, nodes.get("/", {}))
    ds = select_dataset(ds, request, f"this {kind}")
    if kind == "DataArray":
        da = ds[object_info.get("variable", DATAARRAY_VARIABLE)]
        da.name = object_info.get("name")
        return da
    if request.columns is not None:
        ds = select_variables(ds, request.columns)
    return ds


def _time_decoder(nodes: Mapping[str, Any]) -> Any:
    """Decode datetimes at the resolution they were saved with when all share one.

    Otherwise (mixed resolutions, or a version that did not record them) xarray's
    default nanoseconds, and :func:`~memories_geo.formats.zarr.cf.restore` casts.
    """
    import numpy as np
    import xarray as xr

    units = {
        np.datetime_data(np.dtype(recorded))[0]
        for node in nodes.values()
        for recorded in node.get("dtypes", {}).values()
        if np.dtype(recorded).kind == "M"
    }
    for unit in ("s", "ms", "us"):
        if units == {unit}:
            return xr.coders.CFDatetimeCoder(time_unit=unit)
    return True
