"""Write a Dataset, DataArray or DataTree as a new Zarr v3 group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from memories_geo.crs import assign_crs, xarray_crs
from memories_geo.errors import FormatError, UnsupportedObjectError
from memories_geo.footprint import Footprint, bbox_to_wgs84, raster_footprint
from memories_geo.formats.zarr.cf import INFO_ATTR, INFO_VERSION, geo_attrs, prepare, to_dataset
from memories_geo.formats.zarr.encoding import merge_encoding, user_encoding, validate_encoding
from memories_geo.formats.zarr.layout import apply_layout
from memories_geo.formats.zarr.store import write_zarr
from memories_geo.kinds import spatial_dims

if TYPE_CHECKING:
    import xarray as xr

    from memories_geo.backends.base import Location
    from memories_geo.formats.base import WriteOptions

__all__ = ["effective_crs", "write_new", "write_tree"]

Written = tuple[Footprint, Mapping[str, Any], Any]


def effective_crs(obj: xr.Dataset | xr.DataArray, crs: Any) -> Any:
    """``crs`` when given, else the CRS ``obj`` carries."""
    return crs if crs is not None else xarray_crs(obj)


def write_new(obj: Any, location: Location, options: WriteOptions, extra: Mapping[str, Any]) -> Written:
    """Write a Dataset or DataArray as a new group.

    Returns
    -------
    tuple
        ``(footprint, object_info, pending)``; ``pending`` is the delayed chunk write
        with ``compute=False``.
    """
    obj = assign_crs(obj, options.crs)
    footprint = raster_footprint(obj, crs=effective_crs(obj, options.crs))
    ds, info = to_dataset(obj)
    prepared, node = prepare(ds)
    info["nodes"] = {"/": node}
    geo = geo_attrs(prepared)
    if geo:
        info["geo_attrs"] = sorted(geo)
        prepared.attrs.update(geo)
    prepared.attrs[INFO_ATTR] = info
    encoding = merge_encoding(prepared, options.compression, user_encoding(obj, options.encoding, info))
    prepared = apply_layout(prepared, encoding, options.compression)
    pending = write_zarr(
        prepared, location, mode="w-", compute=options.compute, encoding=encoding, extra=extra
    )
    return footprint, info, pending


def write_tree(
    tree: xr.DataTree, location: Location, options: WriteOptions, extra: Mapping[str, Any]
) -> Written:
    """Write a DataTree as a new group with one subgroup per node.

    ``options.encoding`` is keyed by node path, then by variable.

    Raises
    ------
    FormatError
        For an encoding keyed by a path that is not a node.
    UnsupportedObjectError
        When no node has data variables on spatial dimensions.
    """
    import xarray as xr

    datasets: dict[str, xr.Dataset] = {}
    nodes: dict[str, Any] = {}
    encoding: dict[str, Any] = {}
    footprints: list[Footprint] = []
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
        prepared, node_info = prepare(ds)
        node_encoding = merge_encoding(
            prepared, options.compression, validate_encoding(prepared, user.get(node.path))
        )
        datasets[node.path] = apply_layout(prepared, node_encoding, options.compression)
        nodes[node.path] = node_info
        encoding[node.path] = node_encoding
    info: dict[str, Any] = {"version": INFO_VERSION, "type": "DataTree", "name": tree.name, "nodes": nodes}
    datasets["/"].attrs[INFO_ATTR] = info
    pending = write_zarr(
        xr.DataTree.from_dict(datasets),
        location,
        mode="w-",
        compute=options.compute,
        encoding=encoding,
        extra=extra,
    )
    return _union_footprints(footprints, tree), info, pending


def _union_footprints(footprints: list[Footprint], tree: xr.DataTree) -> Footprint:
    if not footprints:
        raise UnsupportedObjectError(
            "no node of this DataTree has data variables on spatial dims (x/y, lon/lat)"
        )
    crss = {f.crs for f in footprints}
    native = None
    if len(crss) == 1 and all(f.native_bbox for f in footprints):
        native = _union([f.native_bbox for f in footprints if f.native_bbox])
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
