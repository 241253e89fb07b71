"""Write a Dataset, DataArray or DataTree as a new Zarr v3 group.

Rasters need a CRS (their own, or ``crs=``); arrays without spatial dims (station time
series, any other Dataset) need none and get none: their footprint comes from their
latitude/longitude coordinates, if any (see :func:`memories_geo.footprint.array_footprint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.crs import assign_crs, xarray_crs
from memories_geo.errors import FormatError, OptionError
from memories_geo.footprint import (
    Footprint,
    array_footprint,
    bbox_to_wgs84,
    raster_footprint,
    xarray_footprint,
)
from memories_geo.formats.zarr.cf import INFO_ATTR, INFO_VERSION, geo_attrs, prepare, to_dataset
from memories_geo.formats.zarr.encoding import (
    StorageLayout,
    merge_encoding,
    user_encoding,
    validate_encoding,
)
from memories_geo.formats.zarr.layout import apply_layout
from memories_geo.formats.zarr.store import Written, write_zarr
from memories_geo.kinds import spatial_dims

if TYPE_CHECKING:
    import xarray as xr

    from memories_geo.backends.base import Location
    from memories_geo.formats.base import WriteOptions
    from memories_geo.integrity import FileDigest

__all__ = ["checked_crs", "effective_crs", "write_new", "write_tree"]



def effective_crs(obj: xr.Dataset | xr.DataArray, crs: Any) -> Any:
    """``crs`` when given, else the CRS ``obj`` carries."""
    return crs if crs is not None else xarray_crs(obj)


def checked_crs(obj: xr.Dataset | xr.DataArray, crs: Any) -> xr.Dataset | xr.DataArray:
    """``obj`` with ``crs`` assigned (see :func:`memories_geo.crs.assign_crs`) if it is a raster.

    Raises
    ------
    OptionError
        For ``crs=`` on an object without spatial dims: there are no x/y coordinates
        for it to describe.
    UnsupportedObjectError
        For ``crs=`` differing from the raster's own CRS.
    """
    if crs is not None and spatial_dims(obj) is None:
        raise OptionError(
            f"crs= sets the CRS of a raster's x/y coordinates; this {type(obj).__name__} has no "
            f"spatial dims (dims: {tuple(map(str, obj.dims))}). Leave crs= unset: latitude/longitude "
            "coordinates, if any, are read as EPSG:4326"
        )
    return assign_crs(obj, crs)


def write_new(
    obj: Any, location: Location, options: WriteOptions, extra: Mapping[str, Any],
    layout: StorageLayout | None = None, *, digests: dict[str, FileDigest] | None = None,
) -> Written:
    """Write a Dataset or DataArray (raster or not) as a new group.

    ``layout`` (chunks, codec, chunk key separator asked for) applies to every array
    unless ``options.encoding`` says otherwise.

    Returns
    -------
    tuple
        ``(footprint, object_info, pending)``; ``pending`` is the delayed chunk write
        with ``compute=False``.
    """
    obj = checked_crs(obj, options.crs)
    footprint = xarray_footprint(obj, crs=effective_crs(obj, options.crs))
    ds, info = to_dataset(obj)
    prepared, node = prepare(ds)
    info["nodes"] = {"/": node}
    geo = geo_attrs(prepared)
    if geo:
        info["geo_attrs"] = sorted(geo)
        prepared.attrs.update(geo)
    prepared.attrs[INFO_ATTR] = info
    user = user_encoding(obj, options.encoding, info)
    if layout is not None:
        user = layout.encoding(prepared, user)
    encoding = merge_encoding(prepared, options.compression, user)
    prepared = apply_layout(prepared, encoding, options.compression)
    pending = write_zarr(
        prepared, location, mode="w-", compute=options.compute, encoding=encoding, extra=extra,
        digests=digests,
    )
    return Written(footprint, info, pending)


def write_tree(
    tree: xr.DataTree, location: Location, options: WriteOptions, extra: Mapping[str, Any],
    layout: StorageLayout | None = None, *, digests: dict[str, FileDigest] | None = None,
) -> Written:
    """Write a DataTree as a new group with one subgroup per node.

    ``options.encoding`` is keyed by node path, then by variable.

    The footprint covers the nodes' rasters and latitude/longitude coordinates;
    a tree with neither has an empty one.

    Raises
    ------
    FormatError
        For an encoding keyed by a path that is not a node.
    OptionError
        For ``crs=`` when no node is a raster.
    UnsupportedObjectError
        For a raster node without a CRS.
    """
    import xarray as xr

    datasets: dict[str, xr.Dataset] = {}
    nodes: dict[str, Any] = {}
    encoding: dict[str, Any] = {}
    footprints: list[Footprint] = []
    rasters = 0
    user = dict(options.encoding or {})
    unknown = sorted(set(user) - {n.path for n in tree.subtree})
    if unknown:
        raise FormatError(
            f"encoding= for a DataTree is keyed by node path; unknown paths {unknown}, "
            f"nodes: {sorted(n.path for n in tree.subtree)}"
        )
    for node in tree.subtree:
        ds = node.to_dataset(inherit=False)
        full = node.to_dataset(inherit=True)
        if spatial_dims(full) is not None and full.data_vars:
            checked = assign_crs(full, options.crs)
            if checked is not full:
                ds = assign_crs(ds, options.crs)
            footprints.append(raster_footprint(checked, crs=effective_crs(checked, options.crs)))
            rasters += 1
        elif full.data_vars:
            footprints.append(array_footprint(full))
        prepared, node_info = prepare(ds)
        node_user = validate_encoding(prepared, user.get(node.path))
        if layout is not None:
            node_user = layout.encoding(prepared, node_user)
        node_encoding = merge_encoding(prepared, options.compression, node_user)
        datasets[node.path] = apply_layout(prepared, node_encoding, options.compression)
        nodes[node.path] = node_info
        encoding[node.path] = node_encoding
    if options.crs is not None and not rasters:
        raise OptionError(
            "crs= sets the CRS of a raster's x/y coordinates; no node of this DataTree has "
            "data variables on spatial dims. Leave crs= unset"
        )
    info: dict[str, Any] = {"version": INFO_VERSION, "type": "DataTree", "name": tree.name, "nodes": nodes}
    datasets["/"].attrs[INFO_ATTR] = info
    pending = write_zarr(
        xr.DataTree.from_dict(datasets),
        location,
        mode="w-",
        compute=options.compute,
        encoding=encoding,
        extra=extra,
        digests=digests,
    )
    return Written(_union_footprints(footprints, tree), info, pending)


def _union_footprints(footprints: list[Footprint], tree: xr.DataTree) -> Footprint:
    located = [f for f in footprints if f.crs is not None]
    crss = {f.crs for f in located}
    native = None
    if len(crss) == 1 and all(f.native_bbox for f in located):
        native = _union([f.native_bbox for f in located if f.native_bbox])
    boxes = [f.bbox for f in footprints if f.bbox]
    bbox = _union(boxes) if boxes else None
    if native is not None and bbox is None:
        bbox = bbox_to_wgs84(native, next(iter(crss)))
    starts = [f.time_start for f in footprints if f.time_start is not None]
    ends = [f.time_end for f in footprints if f.time_end is not None]
    variables: list[str] = []
    for node in tree.subtree:
        prefix = node.path.rstrip("/")
        variables += [f"{prefix}/{v}" for v in node.to_dataset(inherit=False).data_vars]
    return Footprint(
        bbox=bbox,
        native_bbox=native,
        crs=next(iter(crss)) if len(crss) == 1 else None,
        time_start=min(starts) if starts else None,
        time_end=max(ends) if ends else None,
        variables=tuple(variables),
        shape={k: v for f in reversed(footprints) for k, v in f.shape.items()},
    )


def _union(boxes: list[Any]) -> tuple[float, float, float, float]:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
